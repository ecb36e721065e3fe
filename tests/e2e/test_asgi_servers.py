"""The ASGI example (FastAPI + AIGatewayMiddleware) under a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.sync.client import connect

from aigw_middleware.testing import FakeGateway, RecordedRequest

from .servers import ServerProcess, free_port, running, uvicorn

pytestmark = pytest.mark.e2e

APP = "example_asgi.app:app"


@pytest.fixture
def served_example(fake_gateway: FakeGateway) -> Iterator[ServerProcess]:
    """The example app served by uvicorn, calling the test's FakeGateway."""
    port = free_port()
    env = {"AIGW_BASE_URL": fake_gateway.base_url, "AIGW_MAX_RETRIES": "0"}
    with running(uvicorn(APP, port), port=port, env=env) as server:
        yield server


def gateway_request_for(gw: FakeGateway, request_id: str, timeout: float = 5.0) -> RecordedRequest:
    """The gateway request carrying ``request_id``, waiting for calls made after the response."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in gw.requests:
            if request.headers.get("x-ai-request-id") == request_id:
                return request
        time.sleep(0.05)
    raise AssertionError(f"the gateway received no call with X-AI-Request-Id {request_id}")


def test_plain_sdk_and_background_calls_carry_the_request_context(
    served_example: ServerProcess, fake_gateway: FakeGateway
) -> None:
    with httpx.Client(base_url=served_example.base_url, timeout=10) as http:
        plain = http.get("/chat?q=hi&tenant=acme", headers={"X-AI-Request-Id": "e2e-plain"})
        sdk = http.get("/openai?q=hi&tenant=globex", headers={"X-AI-Request-Id": "e2e-sdk"})
        later = http.get("/background?tenant=acme", headers={"X-AI-Request-Id": "e2e-later"})

    assert [r.status_code for r in (plain, sdk, later)] == [200, 200, 200]
    assert plain.headers["x-ai-request-id"] == "e2e-plain"
    assert plain.json()["answer"] == "Hello from FakeGateway: hi"
    assert sdk.json()["answer"] == "Hello from FakeGateway: hi"
    expected = {
        "e2e-plain": ("acme", "support"),
        "e2e-sdk": ("globex", "research"),
        "e2e-later": ("acme", "support"),
    }
    for request_id, (tenant, team) in expected.items():
        request = gateway_request_for(fake_gateway, request_id)
        assert (request.headers.get("x-ai-tenant"), request.headers.get("x-ai-team")) == (
            tenant,
            team,
        )


def test_a_streamed_response_calls_the_gateway_within_its_request(
    served_example: ServerProcess, fake_gateway: FakeGateway
) -> None:
    with (
        httpx.Client(base_url=served_example.base_url, timeout=10) as http,
        http.stream("GET", "/stream?q=hi+there", headers={"X-Request-Id": "e2e-stream"}) as resp,
    ):
        lines = [json.loads(line) for line in resp.iter_lines() if line]
        echoed = resp.headers["x-ai-request-id"]

    assert echoed == "e2e-stream"
    assert lines[0] == {
        "event": "start",
        "request_id": "e2e-stream",
        "tenant": None,
        "team": None,
        "user": None,
        "session": None,
    }
    assert lines[-1]["answer"] == "Hello from FakeGateway: hi there"
    assert lines[-1]["request_id"] == "e2e-stream"
    assert gateway_request_for(fake_gateway, "e2e-stream").json["stream"] is True


def test_nothing_leaks_into_the_next_request_on_the_same_connection(
    served_example: ServerProcess, fake_gateway: FakeGateway
) -> None:
    with httpx.Client(base_url=served_example.base_url, timeout=10) as http:
        first = http.get("/chat?tenant=acme").json()
        second = http.get("/chat").json()

    assert first["tenant"] == "acme"
    assert (second["tenant"], second["team"]) == (None, None)
    assert second["request_id"] != first["request_id"]
    assert "x-ai-tenant" not in gateway_request_for(fake_gateway, second["request_id"]).headers


def test_lifespan_startup_and_shutdown_still_run_with_the_middleware(
    fake_gateway: FakeGateway,
) -> None:
    port = free_port()
    server = ServerProcess(
        uvicorn(APP, port), port=port, env={"AIGW_BASE_URL": fake_gateway.base_url}
    )
    with server:
        assert "example_asgi started" in server.output

    assert "example_asgi stopped" in server.output


def test_without_aigw_base_url_the_example_uses_its_embedded_gateway() -> None:
    port = free_port()
    with (
        running(uvicorn(APP, port), port=port, env={"AIGW_BASE_URL": ""}) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        body = http.get(
            "/chat?q=hello&tenant=globex", headers={"X-AI-Request-Id": "e2e-demo"}
        ).json()

    assert body["request_id"] == "e2e-demo"
    assert (body["tenant"], body["team"]) == ("globex", "research")
    assert body["answer"] == "Hello from FakeGateway: hello"
    assert "using the embedded FakeGateway" in server.output


def test_a_websocket_connection_gets_a_request_id_bound(
    served_example: ServerProcess, fake_gateway: FakeGateway
) -> None:
    url = served_example.base_url.replace("http://", "ws://") + "/ws?tenant=acme"
    with connect(url, additional_headers={"X-AI-Request-Id": "e2e-ws"}, open_timeout=10) as ws:
        handshake_id = ws.response.headers["x-ai-request-id"] if ws.response else None
        ws.send("hello socket")
        answer = json.loads(ws.recv(timeout=10))

    assert handshake_id == "e2e-ws"
    assert (answer["request_id"], answer["tenant"]) == ("e2e-ws", "acme")
    assert answer["answer"] == "Hello from FakeGateway: hello socket"
    sent = gateway_request_for(fake_gateway, "e2e-ws")
    assert sent.headers["x-ai-tenant"] == "acme"


def test_each_way_of_the_benchmark_endpoint_calls_the_gateway_as_it_says(
    served_example: ServerProcess, fake_gateway: FakeGateway
) -> None:
    ways = ["shared", "per_request", "aigw_per_request", "openai_per_request", "plain"]
    with httpx.Client(base_url=served_example.base_url, timeout=10) as http:
        for way in ways:
            request_id = f"e2e-bench-{way}"
            response = http.get(f"/bench?client={way}", headers={"X-AI-Request-Id": request_id})

            assert response.status_code == 200, way
            assert response.json()["request_id"] == request_id
            assert response.json()["answer"].startswith("Hello from FakeGateway"), way
            sent = [
                r for r in fake_gateway.requests if r.headers.get("x-ai-request-id") == request_id
            ]
            # The baseline's plain httpx client sends no correlation; every other way does.
            assert len(sent) == (0 if way == "plain" else 1), way
        refused = http.get("/bench?client=nope")
    assert refused.status_code == 400
    assert "per_request" in refused.json()["error"]
