"""Specification of the HTTP client factories for other SDKs: ``httpx_client()``,
``async_httpx_client()``, ``httpx2_client()`` and ``async_httpx2_client()``.

Runs on both SDK generations: the main venv has the Anthropic SDK 0.x and LangChain over
openai 2.x (httpx); ``.venv-openai3`` has Anthropic 1.x or later and LangChain over openai 3.x
(httpx2), and ``scripts/test`` runs this module there as a step of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable
from typing import Any

import pytest

import aigw_middleware
from aigw_middleware import ConfigurationError, GatewayConfig, bind_context
from aigw_middleware.testing import FakeGateway

from .fake_secrets import FAKE_API_KEY
from .holding_gateway import holding_gateway

anthropic = pytest.importorskip("anthropic")
langchain_openai = pytest.importorskip("langchain_openai")
openai = importlib.import_module("openai")

# Which package each SDK builds on, found from its version, independently of the code under test.
ANTHROPIC_ON_HTTPX2 = int(anthropic.__version__.split(".")[0]) >= 1
OPENAI_ON_HTTPX2 = int(openai.__version__.split(".")[0]) >= 3
ANTHROPIC_HTTP = importlib.import_module("httpx2" if ANTHROPIC_ON_HTTPX2 else "httpx")
OPENAI_HTTP = importlib.import_module("httpx2" if OPENAI_ON_HTTPX2 else "httpx")
ANTHROPIC_FACTORIES = (
    (aigw_middleware.httpx2_client, aigw_middleware.async_httpx2_client)
    if ANTHROPIC_ON_HTTPX2
    else (aigw_middleware.httpx_client, aigw_middleware.async_httpx_client)
)
OPENAI_FACTORIES = (
    (aigw_middleware.httpx2_client, aigw_middleware.async_httpx2_client)
    if OPENAI_ON_HTTPX2
    else (aigw_middleware.httpx_client, aigw_middleware.async_httpx_client)
)
CORRELATION = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")
HELLO = [{"role": "user", "content": "hi"}]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDKs read their own variables; the tests must not depend on the machine's."""
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def other_server() -> Any:
    """A second server on loopback that is not the gateway."""
    with FakeGateway() as server:
        yield server


def origin(gateway: FakeGateway) -> str:
    """The gateway's root: the Anthropic SDK adds ``/v1/messages`` itself."""
    return gateway.base_url.removesuffix("/v1")


def correlation_sent(gateway: FakeGateway, index: int = -1) -> dict[str, str | None]:
    headers = gateway.requests[index].headers
    return {name: headers.get(name) for name in CORRELATION}


BOUND = {"request_id": "sdk-1", "tenant": "acme", "team": "support", "user": "u-1"}
SENT = {
    "x-ai-request-id": "sdk-1",
    "x-ai-tenant": "acme",
    "x-ai-team": "support",
    "x-ai-user": "u-1",
    "x-ai-session": None,
}


# ---------------------------------------------------------------------------------------------
# The clients themselves


@pytest.mark.parametrize(
    ("factory", "package", "kind"),
    [
        ("httpx_client", "httpx", "Client"),
        ("async_httpx_client", "httpx", "AsyncClient"),
        ("httpx2_client", "httpx2", "Client"),
        ("async_httpx2_client", "httpx2", "AsyncClient"),
    ],
)
def test_each_factory_makes_a_client_of_its_package_with_the_gateway_timeout(
    gateway_config: GatewayConfig, factory: str, package: str, kind: str
) -> None:
    http = pytest.importorskip(package)

    client = getattr(aigw_middleware, factory)(gateway_config, timeout=12.5)

    assert type(client) is getattr(http, kind)
    assert client.timeout == http.Timeout(12.5, connect=5.0)
    if kind == "Client":
        client.close()
    else:
        asyncio.run(client.aclose())


def test_without_a_config_the_one_get_client_uses_is_taken(
    shared_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with aigw_middleware.httpx_client() as client, bind_context(request_id="shared-1"):
        client.get(fake_gateway.base_url + "/models")

    assert fake_gateway.last is not None
    assert fake_gateway.last.headers["x-ai-request-id"] == "shared-1"


def test_without_a_gateway_url_it_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="AIGW_BASE_URL"):
        aigw_middleware.httpx_client(GatewayConfig.from_env({}))


def test_the_headers_and_the_gateway_extra_headers_go_to_the_gateway_only(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway, other_server: FakeGateway
) -> None:
    config = gateway_config.replace(extra_headers={"X-Gateway-Key": "gw-secret"})
    with aigw_middleware.httpx_client(config) as client, bind_context(**BOUND):
        client.get(fake_gateway.base_url + "/models")
        client.get(other_server.base_url + "/models")

    assert correlation_sent(fake_gateway) == SENT
    assert fake_gateway.requests[-1].headers["x-gateway-key"] == "gw-secret"
    assert set(correlation_sent(other_server).values()) == {None}
    assert "x-gateway-key" not in other_server.requests[-1].headers


def test_no_cookie_a_gateway_sets_is_sent_back(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(headers={"Set-Cookie": "session=abc; Path=/"})
    with aigw_middleware.httpx_client(gateway_config) as client:
        client.get(fake_gateway.base_url + "/models")
        client.get(fake_gateway.base_url + "/models")

    assert "cookie" not in fake_gateway.requests[-1].headers


def test_the_configured_proxy_is_used_and_the_environment_proxy_is_not(
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    other_server: FakeGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 9 (discard): a client that took the environment's proxy would fail.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    proxy = other_server.base_url.removesuffix("/v1")

    with aigw_middleware.httpx_client(gateway_config, disable_proxy=True) as direct:
        direct.get(fake_gateway.base_url + "/models")
    with aigw_middleware.httpx_client(gateway_config, proxy=proxy) as proxied:
        proxied.get(fake_gateway.base_url + "/models")

    assert len(fake_gateway.requests) == 1
    assert len(other_server.requests) == 1
    assert other_server.requests[0].path == fake_gateway.base_url + "/models"


def test_httpx2_client_without_httpx2_says_what_to_install(
    gateway_config: GatewayConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = importlib.import_module

    def no_httpx2(name: str, package: str | None = None) -> Any:
        if name == "httpx2":
            raise ImportError("No module named 'httpx2'")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_httpx2)

    with pytest.raises(ImportError, match="pip install httpx2"):
        aigw_middleware.httpx2_client(gateway_config)


# ---------------------------------------------------------------------------------------------
# The Anthropic SDK


def test_the_anthropic_sdk_sends_the_headers_to_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    make_client, _ = ANTHROPIC_FACTORIES
    client = anthropic.Anthropic(
        base_url=origin(fake_gateway), api_key=FAKE_API_KEY, http_client=make_client(gateway_config)
    )

    with client, bind_context(**BOUND):
        message = client.messages.create(model="claude-x", max_tokens=64, messages=HELLO)

    assert message.content[0].text == "Hello from FakeGateway: hi"
    assert fake_gateway.last is not None
    assert fake_gateway.last.path == "/v1/messages"
    assert correlation_sent(fake_gateway) == SENT
    assert isinstance(client._client, ANTHROPIC_HTTP.Client)


def test_the_async_anthropic_sdk_sends_the_headers_to_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    _, make_client = ANTHROPIC_FACTORIES

    async def main() -> str:
        client = anthropic.AsyncAnthropic(
            base_url=origin(fake_gateway),
            api_key=FAKE_API_KEY,
            http_client=make_client(gateway_config),
        )
        async with client:
            with bind_context(**BOUND):
                message = await client.messages.create(
                    model="claude-x", max_tokens=64, messages=HELLO
                )
        return str(message.content[0].text)

    assert asyncio.run(main()) == "Hello from FakeGateway: hi"
    assert correlation_sent(fake_gateway) == SENT


def test_the_anthropic_sdk_pointed_elsewhere_gets_no_correlation_headers(
    gateway_config: GatewayConfig, other_server: FakeGateway
) -> None:
    make_client, _ = ANTHROPIC_FACTORIES
    config = gateway_config.replace(extra_headers={"X-Gateway-Key": "gw-secret"})
    client = anthropic.Anthropic(
        base_url=origin(other_server), api_key=FAKE_API_KEY, http_client=make_client(config)
    )

    with client, bind_context(**BOUND):
        client.messages.create(model="claude-x", max_tokens=64, messages=HELLO)

    assert set(correlation_sent(other_server).values()) == {None}
    assert "x-gateway-key" not in other_server.requests[-1].headers


def test_the_anthropic_sdk_takes_the_gateway_timeout(gateway_config: GatewayConfig) -> None:
    make_client, _ = ANTHROPIC_FACTORIES
    client = anthropic.Anthropic(
        base_url="http://127.0.0.1:9",
        api_key=FAKE_API_KEY,
        http_client=make_client(gateway_config, timeout=7.0),
    )

    with client:
        assert client.timeout == ANTHROPIC_HTTP.Timeout(7.0, connect=5.0)


def test_a_client_of_the_other_generation_is_refused_by_the_anthropic_sdk(
    gateway_config: GatewayConfig,
) -> None:
    other = aigw_middleware.httpx_client if ANTHROPIC_ON_HTTPX2 else aigw_middleware.httpx2_client
    pytest.importorskip("httpx" if ANTHROPIC_ON_HTTPX2 else "httpx2")

    with pytest.raises(TypeError), other(gateway_config) as client:
        anthropic.Anthropic(api_key=FAKE_API_KEY, http_client=client)


# ---------------------------------------------------------------------------------------------
# LangChain's ChatOpenAI


def chat_model(gateway: FakeGateway, **kwargs: Any) -> Any:
    """LangChain's ``ChatOpenAI`` pointed at ``gateway``."""
    return langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=gateway.base_url, api_key=FAKE_API_KEY, **kwargs
    )


def test_langchain_chat_openai_sends_the_headers_to_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    make_client, _ = OPENAI_FACTORIES
    with make_client(gateway_config) as http_client:
        llm = chat_model(fake_gateway, http_client=http_client, max_retries=0)
        with bind_context(**BOUND):
            reply = llm.invoke("hi")

    assert reply.content == "Hello from FakeGateway: hi"
    assert fake_gateway.last is not None
    assert fake_gateway.last.path == "/v1/chat/completions"
    assert correlation_sent(fake_gateway) == SENT


def test_langchain_chat_openai_async_sends_the_headers_to_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    _, make_client = OPENAI_FACTORIES

    async def main() -> Any:
        async with make_client(gateway_config) as http_async_client:
            llm = chat_model(fake_gateway, http_async_client=http_async_client, max_retries=0)
            with bind_context(**BOUND):
                return await llm.ainvoke("hi")

    assert asyncio.run(main()).content == "Hello from FakeGateway: hi"
    assert correlation_sent(fake_gateway) == SENT


def test_langchain_retries_carry_the_same_request_id(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    make_client, _ = OPENAI_FACTORIES
    fake_gateway.queue_response(503, headers={"retry-after-ms": "1"})
    with make_client(gateway_config) as http_client:
        llm = chat_model(fake_gateway, http_client=http_client, max_retries=1)
        with bind_context(**BOUND):
            llm.invoke("hi")

    assert [r.headers["x-ai-request-id"] for r in fake_gateway.requests] == ["sdk-1", "sdk-1"]


def test_outside_any_context_each_call_gets_a_fresh_request_id_and_no_tenant(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    make_client: Callable[..., Any] = OPENAI_FACTORIES[0]
    with make_client(gateway_config) as http_client:
        llm = chat_model(fake_gateway, http_client=http_client, max_retries=0)
        llm.invoke("one")
        llm.invoke("two")

    first, second = correlation_sent(fake_gateway, 0), correlation_sent(fake_gateway, 1)
    assert GENERATED_ID.fullmatch(first["x-ai-request-id"] or "")
    assert GENERATED_ID.fullmatch(second["x-ai-request-id"] or "")
    assert first["x-ai-request-id"] != second["x-ai-request-id"]
    assert first["x-ai-tenant"] is None


async def test_the_async_clients_open_as_many_connections_as_max_connections_allows() -> None:
    make = OPENAI_FACTORIES[1]
    async with holding_gateway(hold=0.5) as gateway:
        for limit, calls in ((None, 150), (3, 6)):
            overrides = {} if limit is None else {"max_connections": limit}
            gateway.peak = 0
            async with make(base_url=gateway.base_url, **overrides) as http:
                url = f"{gateway.base_url}/chat/completions"
                answers = await asyncio.gather(
                    *(http.post(url, json={"model": "m"}) for _ in range(calls))
                )
            assert [answer.status_code for answer in answers] == [200] * calls
            assert gateway.peak == (calls if limit is None else limit)
