"""Specification of aigw_middleware.openai: the OpenAI SDK clients wired for the gateway.

The module runs against whichever SDK generation is installed: openai 2.x (httpx) in the main
venv, openai 3.x (httpx2) in ``.venv-openai3``, which ``scripts/test`` runs it with as a step of
its own.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re

import httpx
import openai
import pytest

from aigw_middleware import ConfigurationError, bind_context, current_context
from aigw_middleware.config import GatewayConfig
from aigw_middleware.openai import PLACEHOLDER_API_KEY, AsyncOpenAI, OpenAI
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import CorrelationTransport

from .fake_secrets import FAKE_API_KEY
from .holding_gateway import holding_gateway

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
# The HTTP package this SDK generation builds on, found independently of the code under test.
HTTP = importlib.import_module("httpx2" if OPENAI_MAJOR >= 3 else "httpx")
MESSAGES = [{"role": "user", "content": "hi"}]
CORRELATION = ("x-ai-request-id", "x-ai-tenant", "x-ai-team")
# A retry without waiting the SDK's default backoff of half a second or more.
FAST_RETRY = {"retry-after-ms": "1"}


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads OPENAI_* variables; the tests must not depend on the machine's."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def correlation_of(gw: FakeGateway, index: int = -1) -> tuple[str | None, ...]:
    headers = gw.requests[index].headers
    return tuple(headers.get(name) for name in CORRELATION)


def test_installed_sdk_is_the_expected_generation() -> None:
    expected = os.environ.get("AIGW_EXPECT_OPENAI_MAJOR")
    if expected is None:
        pytest.skip("AIGW_EXPECT_OPENAI_MAJOR is set only by the cross-generation run")
    assert int(expected) == OPENAI_MAJOR


def test_the_clients_are_the_official_sdk_clients_with_an_http_client_of_its_generation(
    gateway_config: GatewayConfig,
) -> None:
    client = OpenAI(config=gateway_config)
    async_client = AsyncOpenAI(config=gateway_config)

    assert isinstance(client, openai.OpenAI)
    assert isinstance(async_client, openai.AsyncOpenAI)
    assert isinstance(client._client, HTTP.Client)
    assert isinstance(async_client._client, HTTP.AsyncClient)
    client.close()


def test_chat_completion_inside_bind_context_reaches_the_gateway_with_the_three_headers(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    client = OpenAI()

    with bind_context(request_id="req-sdk-1", tenant="acme", team="search"):
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.choices[0].message.content == "Hello from FakeGateway: hi"
    assert correlation_of(fake_gateway) == ("req-sdk-1", "acme", "search")
    assert fake_gateway.last is not None
    assert fake_gateway.last.path == "/v1/chat/completions"
    client.close()


async def test_async_chat_completion_carries_the_bound_context(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = AsyncOpenAI(config=gateway_config)

    with bind_context(request_id="req-async-1", tenant="acme", team="ops"):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert correlation_of(fake_gateway) == ("req-async-1", "acme", "ops")
    await client.close()


def test_streamed_chat_completion_carries_the_bound_context(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config)

    with bind_context(request_id="req-stream-1", tenant="acme"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text == "Hello from FakeGateway: hi"
    assert correlation_of(fake_gateway) == ("req-stream-1", "acme", None)
    client.close()


async def test_fifty_concurrent_async_calls_keep_their_own_contexts(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = AsyncOpenAI(config=gateway_config)

    async def call(n: int) -> None:
        with bind_context(request_id=f"req-{n}", tenant=f"tenant-{n}", team=f"team-{n}"):
            await asyncio.sleep(0)
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"call {n}"}]
            )

    await asyncio.wait_for(asyncio.gather(*(call(n) for n in range(50))), timeout=30)

    seen = set()
    for request in fake_gateway.requests:
        n = request.json["messages"][0]["content"].removeprefix("call ")
        assert tuple(request.headers.get(name) for name in CORRELATION) == (
            f"req-{n}",
            f"tenant-{n}",
            f"team-{n}",
        )
        seen.add(n)
    assert len(seen) == 50
    await client.close()


async def test_the_sdk_client_opens_as_many_connections_as_max_connections_allows() -> None:
    async with holding_gateway(hold=0.5) as gateway:
        wide = AsyncOpenAI(config=GatewayConfig(base_url=gateway.base_url, max_retries=0))
        await asyncio.gather(
            *(wide.chat.completions.create(model="m", messages=MESSAGES) for _ in range(150))
        )
        await wide.close()
        wide_peak, gateway.peak = gateway.peak, 0
        narrow = AsyncOpenAI(
            config=GatewayConfig(base_url=gateway.base_url, max_connections=3, max_retries=0)
        )
        await asyncio.gather(
            *(narrow.chat.completions.create(model="m", messages=MESSAGES) for _ in range(6))
        )
        await narrow.close()
    assert (wide_peak, gateway.peak) == (150, 3)


def test_sdk_retries_keep_the_request_id_and_happen_in_the_sdk_only(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(max_retries=2))
    fake_gateway.queue_response(503, headers=FAST_RETRY, times=3)

    with (
        bind_context(request_id="req-retried", tenant="acme"),
        pytest.raises(openai.InternalServerError),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(fake_gateway.requests) == 3  # the first attempt and max_retries=2, no more
    assert {correlation_of(fake_gateway, i) for i in range(3)} == {("req-retried", "acme", None)}
    client.close()


def test_outside_a_context_each_call_gets_one_fresh_request_id_shared_by_its_retries(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config)
    fake_gateway.queue_response(503, headers=FAST_RETRY)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    first, retry, second = (correlation_of(fake_gateway, i)[0] for i in range(3))
    assert first is not None
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert retry == first
    assert second is not None
    assert second != first
    assert current_context() is None
    client.close()


async def test_async_retries_outside_a_context_share_one_request_id(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = AsyncOpenAI(config=gateway_config)
    fake_gateway.queue_response(503, headers=FAST_RETRY)

    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(fake_gateway.requests) == 2
    assert correlation_of(fake_gateway, 0)[0] == correlation_of(fake_gateway, 1)[0] is not None
    await client.close()


def test_no_correlation_header_goes_to_a_host_outside_base_url(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(header_profile="helicone"))

    with FakeGateway() as other, bind_context(request_id="req-private", tenant="acme", team="a"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.get(other.base_url + "/models", cast_to=HTTP.Response)

    assert correlation_of(fake_gateway) == ("req-private", "acme", "a")
    assert other.last is not None
    sent = {name.lower() for name in other.last.headers}
    assert not {name for name in sent if name.startswith(("x-ai-", "helicone-"))}
    client.close()


def test_base_url_api_key_timeout_and_max_retries_come_from_the_active_config(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    client = OpenAI()

    assert str(client.base_url).rstrip("/") == fake_gateway.base_url
    assert client.api_key == FAKE_API_KEY
    assert client.max_retries == shared_config.max_retries
    assert client.timeout.read == shared_config.timeout
    assert client.timeout.connect == 5.0
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_gateway.requests[0].headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    client.close()


def test_no_cookie_the_gateway_sets_is_sent_back(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    fake_gateway.queue_response(headers={"Set-Cookie": "session=acme-secret; Path=/"})
    client = OpenAI(config=gateway_config)

    client.models.list()
    client.models.list()

    assert "cookie" not in fake_gateway.requests[-1].headers
    client.close()


def test_a_placeholder_api_key_is_sent_when_the_config_has_none(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(api_key=None))

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert fake_gateway.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"
    client.close()


def test_keyword_arguments_win_over_the_config_and_headers_still_reach_that_base_url(
    gateway_config: GatewayConfig,
) -> None:
    with FakeGateway() as mine:
        client = OpenAI(
            config=gateway_config,
            base_url=mine.base_url,
            api_key="sk-mine",
            max_retries=0,
            timeout=7.0,
            default_headers={"X-Team-Header": "yes"},
        )
        with bind_context(request_id="req-mine"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        assert client.max_retries == 0
        assert client.timeout == 7.0
        assert mine.last is not None
        assert mine.last.headers["authorization"] == "Bearer sk-mine"
        assert mine.last.headers["x-team-header"] == "yes"
        assert mine.last.headers["x-ai-request-id"] == "req-mine"
        client.close()


def test_config_extra_headers_are_sent_on_every_call(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(extra_headers={"X-Gateway-Auth": "gw-1"}))

    client.models.list()

    assert fake_gateway.requests[0].headers["x-gateway-auth"] == "gw-1"
    client.close()


def test_per_call_extra_headers_win_over_the_bound_context(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config)

    with bind_context(request_id="req-bound", tenant="acme"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"X-AI-Request-Id": "req-explicit", "X-AI-Tenant": "other"},
        )

    assert correlation_of(fake_gateway) == ("req-explicit", "other", None)
    client.close()


def test_model_prefix_is_added_to_models_without_a_slash(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(model_prefix="openai"))

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="anthropic/claude-sonnet", messages=MESSAGES)
    client.embeddings.create(model="text-embedding-3-small", input=["a"])

    sent = [request.json["model"] for request in fake_gateway.requests]
    assert sent == [
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet",
        "openai/text-embedding-3-small",
    ]
    client.close()


async def test_async_model_prefix_is_applied_on_every_attempt(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = AsyncOpenAI(config=gateway_config.replace(model_prefix="openai"))
    fake_gateway.queue_response(503, headers=FAST_RETRY)

    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert [r.json["model"] for r in fake_gateway.requests] == ["openai/gpt-4o-mini"] * 2
    await client.close()


def test_copies_made_with_with_options_keep_the_transport_and_the_gateway_config(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(model_prefix="openai")).with_options(timeout=3.0)

    with bind_context(request_id="req-copied"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert correlation_of(fake_gateway)[0] == "req-copied"
    assert fake_gateway.requests[0].json["model"] == "openai/gpt-4o-mini"
    assert client.timeout == 3.0
    client.close()


async def test_async_copies_keep_the_gateway_config(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = AsyncOpenAI(config=gateway_config.replace(model_prefix="openai")).copy(max_retries=0)

    with bind_context(request_id="req-async-copy"):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert correlation_of(fake_gateway)[0] == "req-async-copy"
    assert fake_gateway.requests[0].json["model"] == "openai/gpt-4o-mini"
    await client.close()


@pytest.mark.skipif(OPENAI_MAJOR >= 3, reason="the documented httpx recipe is for openai 2.x")
def test_an_own_httpx_client_wrapped_in_the_correlation_transport_works(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    http_client = httpx.Client(
        transport=CorrelationTransport(httpx.HTTPTransport(), gateway_config)
    )
    client = openai.OpenAI(base_url=fake_gateway.base_url, api_key="sk", http_client=http_client)

    with bind_context(request_id="req-own", team="blue"):
        client.models.list()

    assert correlation_of(fake_gateway) == ("req-own", None, "blue")
    client.close()


def test_the_api_key_resolver_picks_each_calls_key(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    config = gateway_config.replace(api_key_resolver="tests.tenancy_fixture.tenant_key")
    client = OpenAI(config=config)
    with bind_context(tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with bind_context(tenant="initech"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.models.list()
    keys = [request.headers["authorization"] for request in fake_gateway.requests]
    assert keys == [
        "Bearer sk-acme-virtual-key",
        f"Bearer {FAKE_API_KEY}",
        f"Bearer {FAKE_API_KEY}",
    ]
    client.close()


async def test_the_async_sdk_client_uses_the_resolved_key(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    config = gateway_config.replace(api_key_resolver="tests.tenancy_fixture.tenant_key")
    client = AsyncOpenAI(config=config)
    with bind_context(tenant="globex"):
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_gateway.requests[0].headers["authorization"] == "Bearer sk-globex-virtual-key"
    await client.close()


def test_a_failing_key_resolver_raises_its_configuration_error_at_once(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    config = gateway_config.replace(api_key_resolver="tests.tenancy_fixture.broken_key")
    client = OpenAI(config=config)
    with pytest.raises(ConfigurationError, match="broken_key raised KeyError") as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert "sk-" not in str(caught.value)
    assert fake_gateway.requests == []
    client.close()


def test_the_openrouter_profile_fills_body_fields_the_caller_did_not_set(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config.replace(header_profile="openrouter"))
    with bind_context(user="u-42", session="chat-7"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="mine")
    first, second = (request.json for request in fake_gateway.requests)
    assert (first["user"], first["session_id"]) == ("u-42", "chat-7")
    assert (second["user"], second["session_id"]) == ("mine", "chat-7")
    assert fake_gateway.requests[0].headers["x-session-id"] == "chat-7"
    client.close()


def test_the_bound_context_is_untouched_by_sdk_calls(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    client = OpenAI(config=gateway_config)

    with bind_context(request_id="req-outer") as bound:
        client.models.list()
        assert current_context() is bound
    client.models.list()

    assert current_context() is None
    client.close()


def test_a_redirect_to_another_host_carries_neither_extra_headers_nor_the_key(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    with FakeGateway() as other:
        fake_gateway.queue_response(307, headers={"Location": f"{other.base_url}/chat/completions"})
        config = gateway_config.replace(extra_headers={"x-portkey-api-key": "pk-secret"})
        with OpenAI(config=config) as client, bind_context(request_id="req-redirect"):
            client.chat.completions.create(model="m", messages=MESSAGES)
        gateway_got, other_got = fake_gateway.requests[0].headers, other.requests[0].headers
    assert gateway_got["x-portkey-api-key"] == "pk-secret"
    for name in ("x-portkey-api-key", "authorization", *CORRELATION):
        assert name not in other_got


@pytest.mark.parametrize("how", ["with_options", "copy"])
def test_a_copy_pointed_at_another_gateway_sends_the_headers_there(
    how: str, fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    with FakeGateway() as other:
        original = OpenAI(config=gateway_config)
        moved = getattr(original, how)(base_url=other.base_url)
        with bind_context(request_id="req-moved", tenant="acme"):
            moved.chat.completions.create(model="m", messages=MESSAGES)
            original.chat.completions.create(model="m", messages=MESSAGES)
        assert correlation_of(other) == ("req-moved", "acme", None)
        moved.close()
        original.close()
    assert correlation_of(fake_gateway) == ("req-moved", "acme", None)


async def test_an_async_copy_pointed_at_another_gateway_sends_the_headers_there(
    gateway_config: GatewayConfig,
) -> None:
    with FakeGateway() as other:
        moved = AsyncOpenAI(config=gateway_config).with_options(base_url=other.base_url)
        with bind_context(request_id="req-moved"):
            await moved.chat.completions.create(model="m", messages=MESSAGES)
        await moved.close()
        assert correlation_of(other)[0] == "req-moved"
