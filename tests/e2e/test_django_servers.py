"""The example Django project under real servers: gunicorn (sync, gthread) and uvicorn."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware.testing import FakeGateway, RecordedRequest
from tests.e2e.servers import ServerProcess, free_port, gunicorn, running, uvicorn

pytestmark = pytest.mark.e2e

WSGI_APP = "example_django.project.wsgi:application"
ASGI_APP = "example_django.project.asgi:application"
# A second gunicorn would fight over the default control socket in the home directory.
GUNICORN = ("--workers", "1")
SERVERS = {
    "gunicorn-sync": lambda port: gunicorn(WSGI_APP, port, *GUNICORN),
    "gunicorn-gthread-1": lambda port: gunicorn(
        WSGI_APP, port, *GUNICORN, "--worker-class", "gthread", "--threads", "1"
    ),
    "uvicorn": lambda port: uvicorn(ASGI_APP, port, "--lifespan", "off"),
}
VIEWS = ["/chat/", "/chat-async/", "/stream/", "/stream-async/"]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, gateway: FakeGateway) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "DJANGO_SETTINGS_MODULE": "example_django.project.settings",
        "AIGW_BASE_URL": gateway.base_url,
        "AIGW_TRUST_TENANT_HEADERS_FROM": "127.0.0.1/32",
        "AIGW_MAX_RETRIES": "0",
    }
    with running(SERVERS[request.param](port), port=port, env=env, ready_path="/") as process:
        yield process


def get(server: ServerProcess, path: str, headers: Any = None) -> httpx.Response:
    return httpx.get(server.base_url + path, headers=headers, timeout=10.0)


def seen_by_view(response: httpx.Response) -> list[dict[str, Any]]:
    """What the view reported: its JSON, or the start and end lines of a stream."""
    if response.headers["content-type"] == "application/x-ndjson":
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert lines[0]["event"] == "start"
        assert lines[-1]["event"] == "end"
        assert lines[-1]["text"].startswith("Hello from FakeGateway")
        return [lines[0], lines[-1]]
    body = response.json()
    assert body["answer"].startswith("Hello from FakeGateway")
    return [body]


def gateway_request(gateway: FakeGateway, request_id: str) -> RecordedRequest:
    [found] = [r for r in gateway.requests if r.headers.get("x-ai-request-id") == request_id]
    return found


@pytest.mark.parametrize("path", VIEWS)
def test_view_reaches_gateway_with_request_id_tenant_and_team(
    server: ServerProcess, gateway: FakeGateway, path: str
) -> None:
    request_id = f"e2e-{free_port()}{path.replace('/', '-')}"

    response = get(server, path, {"X-AI-Request-Id": request_id, "X-Demo-User": "alice"})

    assert response.status_code == 200
    assert response.headers["x-ai-request-id"] == request_id
    for seen in seen_by_view(response):
        assert (seen["request_id"], seen["tenant"], seen["team"]) == (
            request_id,
            "acme",
            "research",
        )
    sent = gateway_request(gateway, request_id).headers
    assert (sent["x-ai-tenant"], sent["x-ai-team"]) == ("acme", "research")
    assert f"[request_id={request_id} tenant=acme team=research] example_django:" in (server.output)


@pytest.mark.parametrize("path", VIEWS)
def test_request_without_id_gets_a_fresh_one_at_the_gateway_and_in_the_response(
    server: ServerProcess, gateway: FakeGateway, path: str
) -> None:
    response = get(server, path)

    request_id = response.headers["x-ai-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert "x-ai-tenant" not in gateway_request(gateway, request_id).headers


def test_request_after_a_tenant_request_on_the_same_thread_carries_nothing_of_it(
    server: ServerProcess, gateway: FakeGateway
) -> None:
    first = get(
        server, "/chat/", {"X-AI-Request-Id": f"e2e-a-{free_port()}", "X-AI-Tenant": "acme"}
    )
    second = get(server, "/chat/")

    assert gateway_request(gateway, first.headers["x-ai-request-id"]).headers["x-ai-tenant"] == (
        "acme"
    )
    second_id = second.headers["x-ai-request-id"]
    assert GENERATED_ID.fullmatch(second_id)
    sent = gateway_request(gateway, second_id).headers
    assert "x-ai-tenant" not in sent
    assert "x-ai-team" not in sent


def test_repeated_tenant_header_is_not_forwarded(
    server: ServerProcess, gateway: FakeGateway
) -> None:
    response = get(server, "/chat/", [("X-AI-Tenant", "acme"), ("X-AI-Tenant", "evil")])

    assert response.status_code == 200
    assert (
        "x-ai-tenant" not in gateway_request(gateway, response.headers["x-ai-request-id"]).headers
    )


@pytest.mark.parametrize("bad_id", ["x" * 500, "<script>", "r\xe9q".encode("latin-1"), ""])
def test_invalid_incoming_id_is_replaced(
    server: ServerProcess, gateway: FakeGateway, bad_id: str | bytes
) -> None:
    response = get(server, "/chat/", {"X-AI-Request-Id": bad_id})

    assert response.status_code == 200
    request_id = response.headers["x-ai-request-id"]
    assert GENERATED_ID.fullmatch(request_id)
    gateway_request(gateway, request_id)
    shown = bad_id.decode("latin-1") if isinstance(bad_id, bytes) else bad_id
    assert f"ignored invalid incoming X-AI-Request-Id header {shown[:64]!r}" in server.output


@pytest.mark.parametrize(
    "way", ["shared", "per_request", "aigw_per_request", "openai_per_request", "plain"]
)
def test_each_way_of_the_benchmark_view_calls_the_gateway_as_it_says(
    server: ServerProcess, gateway: FakeGateway, way: str
) -> None:
    request_id = f"e2e-bench-{way}-{free_port()}"

    response = get(server, f"/bench/?client={way}", {"X-AI-Request-Id": request_id})

    assert response.status_code == 200
    assert response.json() == {
        "request_id": request_id,
        "answer": "Hello from FakeGateway: Say hello",
    }
    sent = [r for r in gateway.requests if r.headers.get("x-ai-request-id") == request_id]
    # The baseline's plain httpx client sends no correlation; every other way does.
    assert len(sent) == (0 if way == "plain" else 1)
