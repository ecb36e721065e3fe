"""GatewayClient / AsyncGatewayClient against the FakeGateway: calls, retries, errors, sharing."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    AuthenticationError,
    BudgetExceededError,
    ChatCompletionChunk,
    ConfigurationError,
    GatewayClient,
    GatewayConfig,
    GatewayConnectionError,
    GatewayTimeoutError,
    NotFoundError,
    RateLimitError,
    UpstreamError,
    bind_context,
    get_async_client,
    get_client,
)
from aigw_middleware import client as client_module
from aigw_middleware._httpx import proxy_for
from aigw_middleware.context import CorrelationContext
from aigw_middleware.errors import InvalidRequestError
from aigw_middleware.testing import FakeGateway

from .fake_secrets import FAKE_API_KEY
from .holding_gateway import holding_gateway

HI = [{"role": "user", "content": "hi there"}]


class Api:
    """One client's API with every call run to completion, so that one specification serves the
    sync and the async client alike."""

    def __init__(
        self,
        client: GatewayClient | AsyncGatewayClient,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.client = client
        self._loop = loop

    def __call__(self, call: Callable[[Any], Any]) -> Any:
        """``call(client)``, awaited on the test's event loop when the client is async."""
        result = call(self.client)
        if self._loop is not None:
            result = self._loop.run_until_complete(result)
        return result

    def read(self, stream: Any, into: list[ChatCompletionChunk]) -> None:
        """Every chunk of ``stream`` into ``into`` (kept when reading fails half-way)."""
        if self._loop is None:
            into.extend(stream)
            return

        async def read_all() -> None:
            async for chunk in stream:
                into.append(chunk)

        self._loop.run_until_complete(read_all())

    def close(self) -> None:
        if isinstance(self.client, GatewayClient):
            self.client.close()
        elif self._loop is not None:
            self._loop.run_until_complete(self.client.aclose())
            # As asyncio.run() does: async generators a stream left behind get closed.
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()


@pytest.fixture(params=["sync", "async"])
def make_api(request: pytest.FixtureRequest) -> Iterator[Callable[..., Api]]:
    """Builds the client under test: ``GatewayClient`` or ``AsyncGatewayClient``."""
    made: list[Api] = []

    def make(config: GatewayConfig | None = None, **overrides: Any) -> Api:
        if request.param == "sync":
            api = Api(GatewayClient(config, **overrides), None)
        else:
            api = Api(AsyncGatewayClient(config, **overrides), asyncio.new_event_loop())
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[..., Api], gateway_config: GatewayConfig) -> Api:
    return make_api(gateway_config)


def fast_retry(status: int = 503, **kwargs: Any) -> dict[str, Any]:
    """A failure the client retries after 1 ms (``retry-after-ms``) instead of its backoff."""
    headers = {"retry-after-ms": "1", **kwargs.pop("headers", {})}
    return {"status": status, "headers": headers, **kwargs}


def x_ai(gateway: FakeGateway, index: int = -1) -> dict[str, str]:
    headers = gateway.requests[index].headers
    return {name: value for name, value in headers.items() if name.startswith("x-ai-")}


def test_a_call_inside_a_context_carries_exactly_its_three_values(
    api: Api, fake_gateway: FakeGateway
) -> None:
    with bind_context(request_id="req-1", tenant="acme", team="ml"):
        response = api(lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=HI))
    assert x_ai(fake_gateway) == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "ml",
    }
    assert response.content == "Hello from FakeGateway: hi there"
    assert response.request_id == "req-1"
    assert response.gateway_request_id == "fgw-1"
    assert response.model == "gpt-4o-mini"
    assert response.usage is not None
    assert response.usage["total_tokens"] > 0


def test_outside_a_context_every_call_gets_a_fresh_id_and_no_tenant(
    api: Api, fake_gateway: FakeGateway
) -> None:
    first = api(lambda c: c.chat.completions.create(model="m", messages=HI))
    second = api(lambda c: c.chat.completions.create(model="m", messages=HI))
    assert first.request_id != second.request_id
    for index, result in enumerate((first, second)):
        assert x_ai(fake_gateway, index) == {"x-ai-request-id": result.request_id}
        assert len(result.request_id) == 32
        int(result.request_id, 16)


def test_the_api_key_and_extra_headers_are_sent(
    make_api: Callable[..., Api], fake_gateway: FakeGateway
) -> None:
    config = GatewayConfig(
        base_url=fake_gateway.base_url, api_key="placeholder", extra_headers={"x-gw-auth": "k"}
    )
    make_api(config)(lambda c: c.models.list())
    headers = fake_gateway.requests[0].headers
    assert headers["authorization"] == "Bearer placeholder"
    assert headers["x-gw-auth"] == "k"


def test_model_prefix_is_added_unless_the_model_has_a_slash(
    make_api: Callable[..., Api], fake_gateway: FakeGateway
) -> None:
    api = make_api(base_url=fake_gateway.base_url, model_prefix="openai")
    api(lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=HI))
    api(lambda c: c.chat.completions.create(model="anthropic/claude-3-5-haiku", messages=HI))
    api(lambda c: c.embeddings.create(model="text-embedding-3-small", input="x"))
    models = [request.json["model"] for request in fake_gateway.requests]
    assert models == [
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku",
        "openai/text-embedding-3-small",
    ]


def test_streamed_chunks_join_to_the_plain_answer_and_carry_the_headers(
    api: Api, fake_gateway: FakeGateway
) -> None:
    chunks: list[ChatCompletionChunk] = []
    with bind_context(request_id="req-s", tenant="acme", team="ml"):
        plain = api(lambda c: c.chat.completions.create(model="m", messages=HI))
        stream = api(lambda c: c.chat.completions.create(model="m", messages=HI, stream=True))
        api.read(stream, chunks)
    assert "".join(chunk.delta for chunk in chunks) == plain.content
    assert chunks[-1].finish_reason == "stop"
    assert stream.request_id == "req-s"
    assert stream.gateway_request_id == "fgw-2"
    assert fake_gateway.requests[1].json["stream"] is True
    assert x_ai(fake_gateway, 1) == x_ai(fake_gateway, 0)


def test_embeddings_models_and_raw_requests(api: Api, fake_gateway: FakeGateway) -> None:
    embeddings = api(lambda c: c.embeddings.create(model="e", input=["a", "b"]))
    assert len(embeddings.vectors) == 2
    assert "gpt-4o-mini" in api(lambda c: c.models.list()).ids
    with bind_context(request_id="raw-1"):
        raw = api(lambda c: c.request("POST", "/embeddings", json={"model": "e", "input": "x"}))
    assert raw.status_code == 200
    assert raw.json()["object"] == "list"
    assert x_ai(fake_gateway) == {"x-ai-request-id": "raw-1"}


def test_calls_without_a_base_url_fail_with_a_configuration_error(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(GatewayConfig())
    with pytest.raises(ConfigurationError, match="AIGW_BASE_URL"):
        api(lambda c: c.models.list())


# Retries -------------------------------------------------------------------------------------


def test_503_twice_then_200_succeeds_after_three_attempts_with_one_request_id(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(**fast_retry(503), times=2)
    result = api(lambda c: c.chat.completions.create(model="m", messages=HI))
    assert result.content.startswith("Hello")
    assert len(fake_gateway.requests) == 3
    ids = {request.headers["x-ai-request-id"] for request in fake_gateway.requests}
    assert ids == {result.request_id}


def test_retry_after_one_second_is_waited_for(api: Api, fake_gateway: FakeGateway) -> None:
    fake_gateway.queue_response(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    api(lambda c: c.models.list())
    assert time.monotonic() - started >= 0.95
    assert len(fake_gateway.requests) == 2


def test_retry_after_beyond_sixty_seconds_raises_at_once(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(429, headers={"Retry-After": "120"})
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        api(lambda c: c.models.list())
    assert time.monotonic() - started < 1
    assert caught.value.retry_after == 120.0
    assert caught.value.attempts == 1
    assert len(fake_gateway.requests) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"error": {"message": "Budget exceeded", "type": "budget_exceeded", "code": None}}),
        (
            429,
            {
                "error": {
                    "message": "Quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        ),
        (402, {"error": {"message": "Payment required"}}),
        (412, {"error": {"message": "Budget limit reached"}}),
    ],
)
def test_budget_errors_raise_after_one_attempt(
    api: Api, fake_gateway: FakeGateway, status: int, body: dict[str, object]
) -> None:
    fake_gateway.queue_response(status, json=body, headers={"Retry-After": "1"}, times=3)
    with bind_context(request_id="req-b"), pytest.raises(BudgetExceededError) as caught:
        api(lambda c: c.chat.completions.create(model="m", messages=HI))
    assert len(fake_gateway.requests) == 1
    error = caught.value
    assert (error.status, error.request_id, error.attempts) == (status, "req-b", 1)
    assert error.gateway_request_id == "fgw-1"
    assert "req-b" in str(error)
    assert "fgw-1" in str(error)


def test_401_raises_authentication_error_after_one_attempt(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(
        401, json={"error": {"message": "Invalid key", "type": "auth_error", "code": "bad_key"}}
    )
    with pytest.raises(AuthenticationError, match="Invalid key") as caught:
        api(lambda c: c.embeddings.create(model="e", input="x"))
    assert (caught.value.type, caught.value.code) == ("auth_error", "bad_key")
    assert len(fake_gateway.requests) == 1


def test_404_and_exhausted_5xx(api: Api, fake_gateway: FakeGateway) -> None:
    with pytest.raises(NotFoundError):
        api(lambda c: c.request("GET", "/no/such/route"))
    fake_gateway.queue_response(**fast_retry(500, body="<html>oops</html>"), times=3)
    with pytest.raises(UpstreamError, match="oops") as caught:
        api(lambda c: c.models.list())
    assert caught.value.attempts == 3


def test_a_dropped_connection_raises_gateway_connection_error(
    make_api: Callable[..., Api], fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(drop=True, times=2)
    api = make_api(base_url=fake_gateway.base_url, max_retries=1)
    with bind_context(request_id="req-d"), pytest.raises(GatewayConnectionError) as caught:
        api(lambda c: c.models.list())
    assert not isinstance(caught.value, GatewayTimeoutError)
    assert (caught.value.request_id, caught.value.attempts) == ("req-d", 2)
    assert "req-d" in str(caught.value)


def test_a_late_answer_past_the_timeout_raises_gateway_timeout_error(
    make_api: Callable[..., Api], fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(delay=3.0)
    api = make_api(base_url=fake_gateway.base_url, timeout=0.3, max_retries=0)
    with pytest.raises(GatewayTimeoutError):
        api(lambda c: c.models.list())


def test_an_unreachable_gateway_raises_gateway_connection_error(
    make_api: Callable[..., Api],
) -> None:
    with FakeGateway() as gateway:
        base_url = gateway.base_url
    api = make_api(base_url=base_url, max_retries=0)
    with pytest.raises(GatewayConnectionError, match=r"127\.0\.0\.1"):
        api(lambda c: c.models.list())


def test_a_stream_cut_short_raises_gateway_connection_error(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(stream_cut_after=2)
    stream = api(lambda c: c.chat.completions.create(model="m", messages=HI, stream=True))
    received: list[ChatCompletionChunk] = []
    with pytest.raises(GatewayConnectionError):
        api.read(stream, received)
    assert len(received) == 2


def test_per_call_timeout_and_headers(
    make_api: Callable[..., Api], fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(delay=2.0)
    api = make_api(base_url=fake_gateway.base_url, max_retries=0)
    with pytest.raises(GatewayTimeoutError):
        api(
            lambda c: c.chat.completions.create(
                model="m", messages=HI, timeout=0.2, extra_headers={"x-custom": "1"}
            )
        )
    assert fake_gateway.requests[0].headers["x-custom"] == "1"


# Cookies, sharing, concurrency ---------------------------------------------------------------


def test_a_gateway_cookie_is_never_sent_on_a_later_call(
    api: Api, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(headers={"Set-Cookie": "session=acme-secret; Path=/"})
    with bind_context(tenant="acme"):
        api(lambda c: c.models.list())
    with bind_context(tenant="globex"):
        api(lambda c: c.models.list())
    assert "cookie" not in fake_gateway.requests[1].headers


def test_get_client_is_one_shared_client(shared_config: GatewayConfig) -> None:
    assert get_client() is get_client()
    assert get_client().config is shared_config


def test_get_client_falls_back_to_the_environment(
    fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", fake_gateway.base_url)
    client_module.configure(None)
    try:
        with bind_context(request_id="env-1"):
            get_client().models.list()
    finally:
        client_module.configure(None)
    assert x_ai(fake_gateway) == {"x-ai-request-id": "env-1"}


def test_200_tasks_and_50_threads_never_mix_up_their_contexts(
    shared_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    errors: list[BaseException] = []

    def thread_call(i: int) -> None:
        try:
            with bind_context(request_id=f"thread-{i}", tenant=f"t{i}", team=f"team{i}"):
                get_client().chat.completions.create(model="m", messages=HI)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def task_call(i: int) -> None:
        with bind_context(request_id=f"task-{i}", tenant=f"t{i}", team=f"team{i}"):
            await asyncio.sleep(0)
            await get_async_client().chat.completions.create(model="m", messages=HI)

    async def all_tasks() -> None:
        await asyncio.gather(*(task_call(i) for i in range(200)))

    threads = [threading.Thread(target=thread_call, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    asyncio.run(all_tasks())
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(fake_gateway.requests) == 250
    for request in fake_gateway.requests:
        kind, i = request.headers["x-ai-request-id"].split("-")
        assert kind in ("thread", "task")
        assert request.headers["x-ai-tenant"] == f"t{i}"
        assert request.headers["x-ai-team"] == f"team{i}"
    seen = {request.headers["x-ai-request-id"] for request in fake_gateway.requests}
    assert len(seen) == 250


def test_two_consecutive_asyncio_runs_both_work(
    shared_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    clients: list[AsyncGatewayClient] = []

    async def call(n: int) -> str:
        client = get_async_client()
        clients.append(client)
        with bind_context(request_id=f"run-{n}"):
            result = await client.chat.completions.create(model="m", messages=HI)
        return result.content

    assert asyncio.run(call(1)) == asyncio.run(call(2))
    assert clients[0] is not clients[1]
    assert all(client.is_closed for client in clients)
    assert [r.headers["x-ai-request-id"] for r in fake_gateway.requests] == ["run-1", "run-2"]


def test_a_loop_closed_without_shutting_down_is_freed_with_its_client(
    shared_config: GatewayConfig,
) -> None:
    loop = asyncio.new_event_loop()

    async def take_client() -> AsyncGatewayClient:
        return get_async_client()

    client = weakref.ref(loop.run_until_complete(take_client()))
    loop.close()  # no shutdown_asyncgens(): nothing ever closes the client
    freed = weakref.ref(loop)
    del loop
    gc.collect()
    assert freed() is None
    assert client() is None


async def test_the_async_client_is_shared_within_a_loop(shared_config: GatewayConfig) -> None:
    assert get_async_client() is get_async_client()


async def test_a_burst_of_300_concurrent_async_calls_gets_300_connections_at_once() -> None:
    # httpx's own default is 100 connections: the other 200 calls would wait for the pool.
    async with holding_gateway(hold=1.0) as gateway:
        client = AsyncGatewayClient(base_url=gateway.base_url, max_retries=0)
        answers = await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=HI) for _ in range(300))
        )
        await client.aclose()
    assert [answer.content for answer in answers] == ["held"] * 300
    assert gateway.peak == 300


async def test_max_connections_caps_the_connections_the_async_client_opens() -> None:
    async with holding_gateway(hold=0.2) as gateway:
        client = AsyncGatewayClient(base_url=gateway.base_url, max_connections=3, max_retries=0)
        await asyncio.gather(
            *(client.chat.completions.create(model="m", messages=HI) for _ in range(9))
        )
        await client.aclose()
    assert (gateway.answered, gateway.peak) == (9, 3)


async def test_max_connections_caps_the_connections_the_sync_client_opens() -> None:
    async with holding_gateway(hold=0.2) as gateway:
        with GatewayClient(base_url=gateway.base_url, max_connections=2, max_retries=0) as client:

            def call() -> str:
                return client.chat.completions.create(model="m", messages=HI).content

            answers = await asyncio.gather(*(asyncio.to_thread(call) for _ in range(6)))
    assert answers == ["held"] * 6
    assert gateway.peak == 2


def test_get_async_client_outside_a_loop_explains_itself() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        get_async_client()


def test_proxy_settings_choose_the_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "")
    base = {"base_url": "http://gateway.test/ai"}
    assert proxy_for(GatewayConfig(**base)) == "http://127.0.0.1:3128"
    assert proxy_for(GatewayConfig(**base, disable_proxy=True)) is None
    explicit = GatewayConfig(**base, proxy="http://127.0.0.1:8888", disable_proxy=True)
    assert proxy_for(explicit) == "http://127.0.0.1:8888"


def test_the_client_never_mounts_environment_proxies_around_its_transport(
    monkeypatch: pytest.MonkeyPatch, fake_gateway: FakeGateway
) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    with (
        GatewayClient(base_url=fake_gateway.base_url) as client,
        bind_context(request_id="no-proxy"),
    ):
        client.models.list()
    assert x_ai(fake_gateway) == {"x-ai-request-id": "no-proxy"}


def authorization(gateway: FakeGateway, index: int = -1) -> str | None:
    return gateway.requests[index].headers.get("authorization")


def test_the_api_key_resolver_picks_each_calls_key_and_none_falls_back_to_api_key(
    make_api: Callable[..., Api],
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = gateway_config.replace(api_key_resolver="tests.tenancy_fixture.tenant_key")
    api = make_api(config)
    with caplog.at_level(logging.DEBUG, logger="aigw_middleware"):
        for tenant in ("acme", "globex", "initech"):
            with bind_context(tenant=tenant):
                api(lambda c: c.chat.completions.create(model="m", messages=HI))
        api(lambda c: c.models.list())
    assert [authorization(fake_gateway, i) for i in range(4)] == [
        "Bearer sk-acme-virtual-key",
        "Bearer sk-globex-virtual-key",
        f"Bearer {FAKE_API_KEY}",
        f"Bearer {FAKE_API_KEY}",
    ]
    assert "virtual-key" not in caplog.text
    assert "virtual-key" not in repr(config)


def test_the_resolver_gets_the_calls_context_and_its_key_stays_on_every_retry(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    seen: list[CorrelationContext] = []

    def resolver(context: CorrelationContext) -> str:
        seen.append(context)
        return f"sk-{context.tenant or 'none'}"

    fake_gateway.queue_response(503, headers={"retry-after-ms": "1"})
    with GatewayClient(gateway_config, api_key_resolver=resolver) as client:
        with bind_context(request_id="req-k", tenant="acme"):
            client.chat.completions.create(model="m", messages=HI)
        client.models.list()
    assert [authorization(fake_gateway, i) for i in range(3)] == [
        "Bearer sk-acme",
        "Bearer sk-acme",
        "Bearer sk-none",
    ]
    assert seen[0].request_id == "req-k"
    assert seen[-1].request_id == fake_gateway.requests[-1].headers["x-ai-request-id"]


def test_a_resolver_that_raises_fails_the_call_naming_the_resolver_without_the_key(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    config = gateway_config.replace(api_key_resolver="tests.tenancy_fixture.broken_key")
    with GatewayClient(config) as client, pytest.raises(ConfigurationError) as caught:
        client.chat.completions.create(model="m", messages=HI)
    assert "tests.tenancy_fixture.broken_key raised KeyError" in str(caught.value)
    assert "sk-" not in str(caught.value)
    assert fake_gateway.requests == []


@pytest.mark.parametrize("bad", [42, "", "sk-two\nlines"])
def test_a_resolver_that_returns_no_single_line_string_fails_the_call(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway, bad: object
) -> None:
    with (
        GatewayClient(gateway_config, api_key_resolver=lambda context: bad) as client,
        pytest.raises(ConfigurationError, match="must return a single-line string or None") as err,
    ):
        client.models.list()
    assert "sk-two" not in str(err.value)
    assert fake_gateway.requests == []


def test_a_resolved_key_is_never_sent_to_a_host_that_is_not_the_gateway(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    config = gateway_config.replace(api_key=None, api_key_resolver=lambda c: "sk-tenant")
    with FakeGateway() as other, GatewayClient(config) as client, bind_context(tenant="acme"):
        with pytest.raises(InvalidRequestError):  # the client calls the gateway only
            client.request("GET", f"{other.base_url}/models")
        client.request("GET", "models")
        assert other.requests == []
    assert authorization(fake_gateway) == "Bearer sk-tenant"


def test_a_streamed_call_uses_the_resolved_key(
    make_api: Callable[..., Api], gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    api = make_api(gateway_config, api_key_resolver="tests.tenancy_fixture.tenant_key")
    chunks: list[ChatCompletionChunk] = []
    with bind_context(tenant="acme"):
        stream = api(lambda c: c.chat.completions.create(model="m", messages=HI, stream=True))
        api.read(stream, chunks)
    assert chunks
    assert authorization(fake_gateway) == "Bearer sk-acme-virtual-key"


def test_gateway_request_id_prefers_the_gateways_own_id_and_the_providers_is_kept_apart(
    api: Api, fake_gateway: FakeGateway
) -> None:
    answers = [
        ({"helicone-id": "hel-1", "x-request-id": "req_openai"}, "hel-1", "req_openai"),
        ({"x-bifrost-request-id": "bf-1", "x-request-id": "req_p"}, "bf-1", "req_p"),
        ({"cf-aig-log-id": "01JAD", "x-request-id": "req_p"}, "01JAD", "req_p"),
        ({"x-kong-request-id": "kong-1", "x-request-id": "req_p"}, "kong-1", "req_p"),
        (
            {
                "x-litellm-call-id": "call-1",
                "llm_provider-x-request-id": "req_l",
                "x-request-id": "",
            },
            "call-1",
            "req_l",
        ),
        ({"x-portkey-trace-id": "req-1", "x-request-id": "req_pk"}, "req-1", "req_pk"),
        (
            {"helicone-id": "hel-2", "helicone-provider-req-id": "req_h", "x-request-id": ""},
            "hel-2",
            "req_h",
        ),
        ({"x-request-id": "fgw-direct"}, "fgw-direct", "fgw-direct"),
        ({"x-request-id": "", "apim-request-id": "apim-1"}, None, "apim-1"),
    ]
    for headers, _, _ in answers:
        fake_gateway.queue_response(200, headers=headers)
    results = [api(lambda c: c.chat.completions.create(model="m", messages=HI)) for _ in answers]
    assert [(r.gateway_request_id, r.provider_request_id) for r in results] == [
        (gateway, provider) for _, gateway, provider in answers
    ]


def test_status_errors_carry_the_provider_request_id(api: Api, fake_gateway: FakeGateway) -> None:
    fake_gateway.queue_response(
        401,
        headers={
            "x-litellm-call-id": "call-9",
            "llm_provider-x-request-id": "req_up",
            "x-request-id": "",
        },
    )
    with pytest.raises(AuthenticationError) as caught:
        api(lambda c: c.models.list())
    error = caught.value
    assert (error.gateway_request_id, error.provider_request_id) == ("call-9", "req_up")
    assert "gateway_request_id=call-9 provider_request_id=req_up" in str(error)


def test_the_openrouter_profile_fills_user_and_session_id_in_the_body(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with GatewayClient(gateway_config, header_profile="openrouter") as client:
        with bind_context(user="u-42", session="chat-7"):
            client.chat.completions.create(model="m", messages=HI)
            client.chat.completions.create(model="m", messages=HI, user="caller-set")
        client.chat.completions.create(model="m", messages=HI)
    bodies = [request.json for request in fake_gateway.requests]
    assert (bodies[0]["user"], bodies[0]["session_id"]) == ("u-42", "chat-7")
    assert (bodies[1]["user"], bodies[1]["session_id"]) == ("caller-set", "chat-7")
    assert "user" not in bodies[2]
    assert "session_id" not in bodies[2]


@pytest.mark.parametrize("client_class", [GatewayClient, AsyncGatewayClient])
def test_the_clients_repr_masks_credentials_in_the_base_url(
    client_class: type[GatewayClient] | type[AsyncGatewayClient],
) -> None:
    client = client_class(base_url="https://user:hunter2@gw.example/ai", api_key="k")
    shown = repr(client)
    assert "hunter2" not in shown
    assert "user" not in shown
    assert "https://***@gw.example/ai" in shown
