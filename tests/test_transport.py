"""The correlation transports: which requests get which headers, per hop."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from aigw_middleware import GatewayConfig, bind_context
from aigw_middleware.context import CorrelationContext, _reset_context, _set_context
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import AsyncCorrelationTransport, CorrelationTransport

X_AI = ("x-ai-request-id", "x-ai-tenant", "x-ai-team")


def x_ai(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower().startswith("x-ai-")}


class Recorder:
    """An httpx.MockTransport handler that keeps every request it saw."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"ok": True})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def client_for(recorder: Recorder, **config: object) -> httpx.Client:
    settings = {"base_url": "http://gateway.test/ai", **config}
    transport = CorrelationTransport(httpx.MockTransport(recorder), GatewayConfig(**settings))  # type: ignore[arg-type]
    return httpx.Client(transport=transport)


def test_inside_a_context_the_gateway_gets_exactly_the_three_headers(recorder: Recorder) -> None:
    with client_for(recorder) as client, bind_context(request_id="req-1", tenant="acme", team="ml"):
        client.post("http://gateway.test/ai/chat/completions", json={})
    assert x_ai(recorder.requests[0].headers) == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "ml",
    }


def test_outside_a_context_each_request_gets_a_fresh_id_and_no_tenant(recorder: Recorder) -> None:
    with client_for(recorder) as client:
        client.get("http://gateway.test/ai/models")
        client.get("http://gateway.test/ai/models")
    ids = [request.headers["x-ai-request-id"] for request in recorder.requests]
    assert len(set(ids)) == 2
    for request_id in ids:
        assert len(request_id) == 32
        int(request_id, 16)
    for request in recorder.requests:
        assert set(x_ai(request.headers)) == {"x-ai-request-id"}


@pytest.mark.parametrize(
    "url",
    [
        "http://elsewhere.test/ai/chat/completions",  # other host
        "https://gateway.test/ai/chat/completions",  # other scheme
        "http://gateway.test:8080/ai/chat/completions",  # other port
        "http://gateway.test/other/chat/completions",  # outside the path prefix
        "http://gateway.test/aix/chat/completions",  # prefix must end at a segment
    ],
)
def test_requests_outside_base_url_get_no_correlation_header(recorder: Recorder, url: str) -> None:
    with client_for(recorder) as client, bind_context(request_id="req-1", tenant="acme", team="ml"):
        client.post(url, headers={"X-AI-Tenant": "explicit"}, json={})
    assert x_ai(recorder.requests[0].headers) == {}


def test_default_ports_and_host_case_match(recorder: Recorder) -> None:
    with client_for(recorder) as client, bind_context(request_id="req-1"):
        client.get("http://GATEWAY.test:80/ai")
    assert recorder.requests[0].headers["x-ai-request-id"] == "req-1"


def test_propagate_to_prefixes_also_receive_the_headers(recorder: Recorder) -> None:
    with (
        client_for(recorder, propagate_to=["http://tools.test:9000/mcp"]) as client,
        bind_context(request_id="req-1", tenant="acme"),
    ):
        client.get("http://tools.test:9000/mcp/search")
        client.get("http://tools.test:9000/mcpx")
    assert x_ai(recorder.requests[0].headers) == {"x-ai-request-id": "req-1", "x-ai-tenant": "acme"}
    assert x_ai(recorder.requests[1].headers) == {}


def test_explicit_per_call_headers_win(recorder: Recorder) -> None:
    with client_for(recorder) as client, bind_context(request_id="req-1", tenant="acme", team="ml"):
        client.get("http://gateway.test/ai/models", headers={"x-ai-tenant": "override"})
    assert x_ai(recorder.requests[0].headers) == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "override",
        "x-ai-team": "ml",
    }


def test_invalid_explicit_values_are_dropped_and_logged(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="aigw_middleware"),
        client_for(recorder) as client,
        bind_context(request_id="req-1", tenant="acme"),
    ):
        client.get(
            "http://gateway.test/ai/models",
            headers={"X-AI-Request-Id": "<bad id>", "X-AI-Team": "bad team"},
        )
    assert x_ai(recorder.requests[0].headers) == {"x-ai-request-id": "req-1", "x-ai-tenant": "acme"}
    assert "invalid explicit x-ai-request-id" in caplog.text
    assert "invalid explicit x-ai-team" in caplog.text


def test_user_and_session_go_to_the_gateway_and_explicit_ones_are_checked_like_the_rest(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="aigw_middleware"),
        client_for(recorder) as client,
        bind_context(request_id="req-1", user="u-42", session="chat-7"),
    ):
        client.get("http://gateway.test/ai/models")
        client.get("http://gateway.test/ai/models", headers={"X-AI-Session": "chat-8"})
        client.get("http://gateway.test/ai/models", headers={"X-AI-User": "jane doe"})
        client.get("http://elsewhere.test/ai/models", headers={"X-AI-User": "u-1"})
    first, explicit, invalid, elsewhere = (x_ai(request.headers) for request in recorder.requests)
    assert first == {"x-ai-request-id": "req-1", "x-ai-user": "u-42", "x-ai-session": "chat-7"}
    assert explicit["x-ai-session"] == "chat-8"
    assert invalid["x-ai-user"] == "u-42"
    assert "invalid explicit x-ai-user" in caplog.text
    assert elsewhere == {}


def test_client_level_correlation_headers_are_not_sent_elsewhere(recorder: Recorder) -> None:
    config = GatewayConfig(base_url="http://gateway.test/ai")
    transport = CorrelationTransport(httpx.MockTransport(recorder), config)
    with httpx.Client(transport=transport, headers={"X-AI-Tenant": "sticky"}) as client:
        client.get("http://elsewhere.test/")
    assert x_ai(recorder.requests[0].headers) == {}


def test_a_context_with_invalid_values_is_sanitised_before_it_goes_out(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    token = _set_context(CorrelationContext("bad id\r\n", "acme", "bad team"))
    try:
        with caplog.at_level(logging.WARNING, logger="aigw_middleware"), client_for(recorder) as c:
            c.get("http://gateway.test/ai/models")
    finally:
        _reset_context(token)
    sent = x_ai(recorder.requests[0].headers)
    assert sent["x-ai-tenant"] == "acme"
    assert "x-ai-team" not in sent
    assert len(sent["x-ai-request-id"]) == 32


def test_custom_header_names(recorder: Recorder) -> None:
    with (
        client_for(
            recorder,
            request_id_header="X-Correlation-Id",
            tenant_header="X-Org",
            team_header="X-Grp",
        ) as client,
        bind_context(request_id="req-1", tenant="acme", team="ml"),
    ):
        client.get("http://gateway.test/ai/models")
    headers = recorder.requests[0].headers
    assert (headers["x-correlation-id"], headers["x-org"], headers["x-grp"]) == (
        "req-1",
        "acme",
        "ml",
    )
    assert x_ai(headers) == {}


@pytest.fixture
def two_gateways() -> Iterator[tuple[FakeGateway, FakeGateway]]:
    with FakeGateway() as gateway, FakeGateway() as other:
        yield gateway, other


def test_a_redirect_to_another_host_carries_no_correlation_header(
    two_gateways: tuple[FakeGateway, FakeGateway],
) -> None:
    gateway, other = two_gateways
    gateway.queue_response(302, headers={"Location": f"{other.base_url}/models"})
    config = GatewayConfig(base_url=gateway.base_url)
    transport = CorrelationTransport(httpx.HTTPTransport(), config)
    with (
        httpx.Client(transport=transport, follow_redirects=True, timeout=5) as client,
        bind_context(request_id="req-1", tenant="acme", team="ml"),
    ):
        response = client.get(f"{gateway.base_url}/models")
    assert response.status_code == 200
    assert x_ai(gateway.requests[0].headers) == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "ml",
    }
    assert [request.path for request in other.requests] == ["/v1/models"]
    assert x_ai(other.requests[0].headers) == {}


def test_a_redirect_back_to_the_gateway_keeps_the_same_request_id(
    two_gateways: tuple[FakeGateway, FakeGateway],
) -> None:
    gateway, other = two_gateways
    gateway.queue_response(302, headers={"Location": f"{other.base_url}/hop"})
    other.queue_response(302, headers={"Location": f"{gateway.base_url}/models"})
    config = GatewayConfig(base_url=gateway.base_url)
    transport = CorrelationTransport(httpx.HTTPTransport(), config)
    with httpx.Client(transport=transport, follow_redirects=True, timeout=5) as client:
        client.get(f"{gateway.base_url}/models")
    first, last = gateway.requests
    assert first.headers["x-ai-request-id"] == last.headers["x-ai-request-id"]
    assert x_ai(other.requests[0].headers) == {}


async def test_the_async_transport_applies_the_same_rule(recorder: Recorder) -> None:
    config = GatewayConfig(base_url="http://gateway.test/ai")
    transport = AsyncCorrelationTransport(httpx.MockTransport(recorder), config)
    async with httpx.AsyncClient(transport=transport) as client:
        with bind_context(request_id="req-a", tenant="acme"):
            await client.get("http://gateway.test/ai/models")
            await client.get("http://elsewhere.test/ai/models")
    assert x_ai(recorder.requests[0].headers) == {"x-ai-request-id": "req-a", "x-ai-tenant": "acme"}
    assert x_ai(recorder.requests[1].headers) == {}


def test_every_attempt_is_logged_with_the_correlation_fields(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="aigw_middleware"),
        client_for(recorder) as client,
        bind_context(request_id="req-1", tenant="acme"),
    ):
        client.get("http://gateway.test/ai/models?api_key=should-not-appear")
    [record] = [r for r in caplog.records if r.name == "aigw_middleware"]
    assert record.aigw_target == "gateway.test/ai/models"  # type: ignore[attr-defined]
    assert record.aigw_status == 200  # type: ignore[attr-defined]
    assert (record.request_id, record.tenant, record.team) == ("req-1", "acme", "-")  # type: ignore[attr-defined]
    # httpx's own INFO record shows the whole URL; the library's records never the query string.
    assert "should-not-appear" not in record.getMessage()


def test_a_resolved_key_goes_to_the_gateway_only_and_not_past_a_redirect(
    recorder: Recorder,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        recorder.requests.append(request)
        if request.url.path.startswith("/ai/"):
            return httpx.Response(307, headers={"Location": "http://elsewhere.test/x"})
        return httpx.Response(200, json={})

    config = GatewayConfig(base_url="http://gateway.test/ai", api_key_resolver=lambda c: "sk-t")
    transport = CorrelationTransport(httpx.MockTransport(handler), config)
    with (
        httpx.Client(transport=transport, follow_redirects=True) as client,
        bind_context(tenant="acme"),
    ):
        client.get("http://gateway.test/ai/models")
        client.get("http://gateway.test/other", headers={"Authorization": "Bearer app-token"})
    to_gateway, redirected, outside = recorder.requests
    assert to_gateway.headers["authorization"] == "Bearer sk-t"
    assert "authorization" not in redirected.headers
    # Authorization never leaves for a URL that is not a target, whoever set it.
    assert "authorization" not in outside.headers


GATEWAY_SECRETS = {"authorization": "Bearer sk-secret", "x-gw-auth": "gw-secret"}


def test_a_hop_outside_the_targets_loses_the_gateways_credentials(recorder: Recorder) -> None:
    transport = CorrelationTransport(
        httpx.MockTransport(recorder),
        GatewayConfig(base_url="http://gateway.test/ai", extra_headers={"X-GW-Auth": "gw-secret"}),
    )
    with httpx.Client(transport=transport, headers=GATEWAY_SECRETS) as client:
        client.get("http://gateway.test/ai/models")
        client.get("http://gateway.test/other")  # same origin, outside the base path
        client.get("https://elsewhere.test/x")
    to_gateway, *elsewhere = (request.headers for request in recorder.requests)
    assert {name: to_gateway[name] for name in GATEWAY_SECRETS} == GATEWAY_SECRETS
    for headers in elsewhere:
        assert not set(GATEWAY_SECRETS).intersection(headers)


def test_a_redirect_within_the_origin_but_outside_the_base_path_loses_the_credentials(
    two_gateways: tuple[FakeGateway, FakeGateway],
) -> None:
    gateway, _ = two_gateways
    gateway.queue_response(307, headers={"Location": f"{gateway.base_url}/../admin"})
    config = GatewayConfig(base_url=gateway.base_url, extra_headers={"X-GW-Auth": "gw-secret"})
    transport = CorrelationTransport(httpx.HTTPTransport(), config)
    with httpx.Client(
        transport=transport, follow_redirects=True, timeout=5, headers=GATEWAY_SECRETS
    ) as client:
        client.get(f"{gateway.base_url}/models")
    first, second = gateway.requests
    assert second.path == "/admin"
    assert set(GATEWAY_SECRETS) <= set(first.headers)
    assert not set(GATEWAY_SECRETS).intersection(second.headers)


async def test_the_async_transport_strips_the_credentials_too(recorder: Recorder) -> None:
    config = GatewayConfig(base_url="http://gateway.test/ai", extra_headers={"X-GW-Auth": "k"})
    transport = AsyncCorrelationTransport(httpx.MockTransport(recorder), config)
    async with httpx.AsyncClient(transport=transport, headers=GATEWAY_SECRETS) as client:
        await client.get("https://elsewhere.test/x")
    assert not set(GATEWAY_SECRETS).intersection(recorder.requests[0].headers)


def test_a_redirect_within_the_gateway_sends_each_header_once_with_the_same_values() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/ai/old":
            return httpx.Response(307, headers={"Location": "http://gateway.test/ai/new"})
        return httpx.Response(200, json={"ok": True})

    config = GatewayConfig(base_url="http://gateway.test/ai")
    transport = CorrelationTransport(httpx.MockTransport(gateway), config)
    with (
        httpx.Client(transport=transport, follow_redirects=True) as client,
        bind_context(request_id="req-1", tenant="acme", team="ml"),
    ):
        client.post("http://gateway.test/ai/old", json={}, headers={"X-AI-Team": "explicit"})
    assert [request.url.path for request in seen] == ["/ai/old", "/ai/new"]
    for request in seen:
        assert sorted(name for name, _ in request.headers.multi_items() if name in X_AI) == [
            "x-ai-request-id",
            "x-ai-team",
            "x-ai-tenant",
        ]
        assert x_ai(request.headers) == {
            "x-ai-request-id": "req-1",
            "x-ai-tenant": "acme",
            "x-ai-team": "explicit",
        }


class OtherHeaders(httpx.Headers):
    """Headers of a class the transport does not know: it must use their public methods."""


@pytest.mark.parametrize("headers_class", [httpx.Headers, OtherHeaders])
def test_any_headers_class_gets_the_same_rule(headers_class: type[httpx.Headers]) -> None:
    sent: list[httpx.Request] = []
    config = GatewayConfig(base_url="http://gateway.test/ai", api_key="sk-gateway")
    transport = CorrelationTransport(
        httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(204)), config
    )
    with bind_context(request_id="req-1", tenant="acme", team="ml"):
        for url in ("http://gateway.test/ai/models", "http://elsewhere.test/ai/models"):
            request = httpx.Request("GET", url)
            request.headers = headers_class(
                {"Authorization": "Bearer sk-gateway", "X-AI-Tenant": "explicit"}
            )
            transport.handle_request(request)
    to_gateway, elsewhere = sent
    # httpx's own class becomes its indexed twin (tests/test_indexed_headers.py); others stay.
    assert isinstance(to_gateway.headers, headers_class)
    assert type(to_gateway.headers) is headers_class or headers_class is httpx.Headers
    assert x_ai(to_gateway.headers) == {
        "x-ai-request-id": "req-1",
        "x-ai-tenant": "explicit",
        "x-ai-team": "ml",
    }
    assert to_gateway.headers["Authorization"] == "Bearer sk-gateway"
    assert x_ai(elsewhere.headers) == {}
    assert "Authorization" not in elsewhere.headers
