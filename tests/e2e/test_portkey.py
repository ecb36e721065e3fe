"""Through the real Portkey gateway: our client → Portkey (npm, on loopback) → a FakeGateway.

The last test serves the example Django project with gunicorn in front of that path.

The FakeGateway stands as the upstream OpenAI provider (``x-portkey-provider: openai`` and
``x-portkey-custom-host``). Portkey makes no retries of its own unless a Portkey config asks for
them, so every attempt of our client is one request at the FakeGateway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    BudgetExceededError,
    GatewayClient,
    GatewayConfig,
    RateLimitError,
    UpstreamError,
    bind_context,
)
from aigw_middleware.testing import FakeGateway

from .portkey import PortkeyMissing, running_portkey, upstream_headers
from .servers import ServerProcess, free_port, gunicorn, running

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hello through portkey"}]
ANSWER = "Hello from FakeGateway: hello through portkey"
BOUND = {"request_id": "req-portkey-1", "tenant": "acme", "team": "ml"}
X_AI_RECEIVED = {"x-ai-request-id": "req-portkey-1", "x-ai-tenant": "acme", "x-ai-team": "ml"}


def x_ai(headers: httpx.Headers) -> dict[str, str]:
    """The X-AI headers among a recorded request's headers."""
    return {name: value for name, value in headers.items() if name.startswith("x-ai-")}


@pytest.fixture(scope="module")
def portkey() -> Iterator[ServerProcess]:
    try:
        with running_portkey() as server:
            yield server
    except PortkeyMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def config(portkey: ServerProcess, fake_gateway: FakeGateway) -> GatewayConfig:
    """Our client pointed at Portkey, which routes to the test's FakeGateway."""
    return GatewayConfig.from_env(
        {},
        base_url=f"{portkey.base_url}/v1",
        api_key="sk-placeholder",
        header_profile="portkey",
        extra_headers=upstream_headers(fake_gateway.base_url),
        disable_proxy=True,
    )


@pytest.fixture
def client(config: GatewayConfig) -> Iterator[GatewayClient]:
    with GatewayClient(config) as client:
        yield client


def test_the_upstream_receives_the_x_ai_headers_and_the_answer_comes_back(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    with bind_context(**BOUND):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.content == ANSWER
    assert response.request_id == "req-portkey-1"
    # Portkey's own ID is its trace ID; the upstream's x-request-id passes through.
    assert response.gateway_request_id == "req-portkey-1"
    assert response.provider_request_id == "fgw-1"
    (received,) = fake_gateway.requests
    assert received.path == "/v1/chat/completions"
    assert received.json["messages"] == MESSAGES
    assert x_ai(received.headers) == X_AI_RECEIVED
    assert received.headers["authorization"] == "Bearer sk-placeholder"
    assert not [name for name in received.headers if name.startswith("x-portkey-")]


def test_user_and_session_reach_the_upstream_and_portkey_accepts_the_metadata(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    bound = {**BOUND, "user": "u-42", "session": "chat-7"}
    with bind_context(**bound):
        response = client.request(
            "POST", "chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}
        )
    assert response.status_code == 200
    (received,) = fake_gateway.requests
    assert x_ai(received.headers) == {
        **X_AI_RECEIVED,
        "x-ai-user": "u-42",
        "x-ai-session": "chat-7",
    }
    sent = json.loads(response.request.headers["x-portkey-metadata"])
    assert sent == {
        "request_id": "req-portkey-1",
        "tenant": "acme",
        "team": "ml",
        "_user": "u-42",
        "session": "chat-7",
    }


def test_a_tenants_key_from_the_resolver_reaches_the_upstream(
    config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    keyed = config.replace(api_key_resolver="tests.tenancy_fixture.tenant_key")
    with GatewayClient(keyed) as client:
        with bind_context(tenant="acme"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    keys = [request.headers["authorization"] for request in fake_gateway.requests]
    assert keys == ["Bearer sk-acme-virtual-key", "Bearer sk-placeholder"]


def test_portkey_takes_the_request_id_as_its_trace_id(client: GatewayClient) -> None:
    with bind_context(**BOUND):
        response = client.request(
            "POST", "chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES}
        )
    assert response.headers["x-portkey-trace-id"] == "req-portkey-1"


def test_without_the_portkey_profile_no_x_ai_header_reaches_the_upstream(
    config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with GatewayClient(config, header_profile="generic") as client, bind_context(**BOUND):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert x_ai(fake_gateway.requests[0].headers) == {}


def test_an_upstream_429_with_retry_after_is_waited_for_then_raised_as_rate_limit_error(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(429, headers={"Retry-After": "1"}, times=3)
    started = time.monotonic()
    with bind_context(**BOUND), pytest.raises(RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert time.monotonic() - started >= 2.0
    assert (caught.value.status, caught.value.retry_after, caught.value.attempts) == (429, 1, 3)
    assert caught.value.request_id == "req-portkey-1"
    assert [x_ai(request.headers) for request in fake_gateway.requests] == [X_AI_RECEIVED] * 3


def test_an_upstream_500_is_retried_then_raised_as_upstream_error(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(500, times=3)
    with bind_context(**BOUND), pytest.raises(UpstreamError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (caught.value.status, caught.value.attempts) == (500, 3)
    assert caught.value.gateway_request_id == "req-portkey-1"
    assert caught.value.provider_request_id == "fgw-3"
    assert len(fake_gateway.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (402, None),
        (429, {"message": "You exceeded your quota.", "type": "insufficient_quota"}),
        (400, {"message": "Budget has been exceeded!", "type": "budget_exceeded", "code": "400"}),
    ],
    ids=["402", "429-insufficient-quota", "400-budget-exceeded"],
)
def test_an_upstream_budget_error_is_raised_at_once_as_budget_exceeded_error(
    client: GatewayClient,
    fake_gateway: FakeGateway,
    status: int,
    error: dict[str, str] | None,
) -> None:
    body = None if error is None else {"error": error}
    fake_gateway.queue_response(status, json=body, times=3)
    with bind_context(**BOUND), pytest.raises(BudgetExceededError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert (caught.value.status, caught.value.attempts) == (status, 1)
    if error is not None:
        assert caught.value.type == error["type"]
        assert error["message"] in caught.value.message
    assert len(fake_gateway.requests) == 1


def test_a_streamed_completion_streams_through_portkey(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    with bind_context(**BOUND):
        plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as stream:
            chunks = list(stream)
    assert len(chunks) > 2
    assert "".join(chunk.delta for chunk in chunks) == plain.content == ANSWER
    assert chunks[-1].finish_reason == "stop"
    streamed = fake_gateway.requests[1]
    assert streamed.json["stream"] is True
    assert x_ai(streamed.headers) == X_AI_RECEIVED


async def test_the_async_client_goes_through_portkey_plain_and_streamed(
    config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    async with AsyncGatewayClient(config) as client:
        with bind_context(**BOUND):
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            deltas = [chunk.delta async for chunk in stream]
    assert "".join(deltas) == plain.content == ANSWER
    assert [x_ai(request.headers) for request in fake_gateway.requests] == [X_AI_RECEIVED] * 2


@pytest.mark.parametrize("view", ["/chat/", "/stream/"])
def test_the_example_django_app_under_gunicorn_sends_the_incoming_ids_through_portkey(
    portkey: ServerProcess, fake_gateway: FakeGateway, view: str
) -> None:
    port = free_port()
    argv = gunicorn("example_django.project.wsgi:application", port, "--workers", "1")
    env = {
        "DJANGO_SETTINGS_MODULE": "example_django.project.settings",
        "AIGW_BASE_URL": f"{portkey.base_url}/v1",
        "AIGW_HEADER_PROFILE": "portkey",
        "AIGW_EXTRA_HEADERS": json.dumps(upstream_headers(fake_gateway.base_url)),
        "AIGW_DISABLE_PROXY": "true",
    }
    with running(argv, port=port, env=env) as app:
        response = httpx.get(
            f"{app.base_url}{view}?q=hello django",
            headers={
                "X-AI-Request-Id": "req-django-1",
                "X-AI-Session": "chat-9",
                "X-Demo-User": "alice",
            },
            timeout=20.0,
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-ai-request-id"] == "req-django-1"
    assert "Hello from FakeGateway: hello django" in response.text
    (received,) = fake_gateway.requests
    assert x_ai(received.headers) == {
        "x-ai-request-id": "req-django-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "research",
        "x-ai-user": "u-7f3a9c",
        "x-ai-session": "chat-9",
    }
    assert received.json.get("stream", False) is (view == "/stream/")


def test_portkey_oss_drops_traceparent_unless_its_forward_list_names_it(
    exporter: Any, client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    """Portkey OSS has no trace-context support: the gateway span's ``traceparent`` reaches
    Portkey, which forwards it upstream only when ``x-portkey-forward-headers`` names it."""
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    forward = "x-ai-request-id,x-ai-tenant,x-ai-team,traceparent"
    with bind_context(**BOUND):
        client.request("POST", "chat/completions", json=body)
        client.request(
            "POST", "chat/completions", json=body, headers={"x-portkey-forward-headers": forward}
        )
    dropped, forwarded = fake_gateway.requests
    assert "traceparent" not in dropped.headers
    _first, second = (s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT")
    _version, trace_id, parent, _flags = forwarded.headers["traceparent"].split("-")
    assert (int(trace_id, 16), int(parent, 16)) == (second.context.trace_id, second.context.span_id)
    assert x_ai(forwarded.headers) == X_AI_RECEIVED
