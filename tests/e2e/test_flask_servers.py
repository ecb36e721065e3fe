"""The Flask example app under real gunicorn workers (sync, and gthread with one thread).

The sync server trusts no peer with tenant headers; the gthread server trusts 127.0.0.1 through
``AIGW_TRUST_TENANT_HEADERS_FROM``. Each worker runs one request at a time on one thread, so
consecutive requests show whether anything of an earlier request stayed bound.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ServerProcess, free_port, gunicorn, running

pytestmark = pytest.mark.e2e

WORKERS = {
    "sync": ("--workers", "1", "--worker-class", "sync"),
    "gthread": ("--workers", "1", "--worker-class", "gthread", "--threads", "1"),
}
TRUSTED_PEERS = {"sync": "", "gthread": "127.0.0.1/32"}
VIEWS = ["/chat", "/stream", "/stream-ctx", "/async"]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def servers(gateway: FakeGateway) -> Iterator[dict[str, ServerProcess]]:
    with ExitStack() as stack:
        started = {}
        for name, worker_args in WORKERS.items():
            port = free_port()
            env = {
                "AIGW_BASE_URL": gateway.base_url,
                "AIGW_TIMEOUT": "10",
                "AIGW_TRUST_TENANT_HEADERS_FROM": TRUSTED_PEERS[name],
            }
            argv = gunicorn("example_flask.app:app", port, *worker_args)
            started[name] = stack.enter_context(running(argv, port=port, env=env))
        yield started


@pytest.fixture(params=list(WORKERS))
def server(request: pytest.FixtureRequest, servers: dict[str, ServerProcess]) -> ServerProcess:
    return servers[request.param]


@pytest.fixture(autouse=True)
def _fresh_gateway(gateway: FakeGateway) -> None:
    gateway.clear()


def get(server: ServerProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(server.base_url + path, timeout=10.0, **kwargs)


def seen_by_view(response: httpx.Response) -> list[dict[str, Any]]:
    """What the view reported: one JSON object, or the start and end lines of a stream."""
    if response.headers["content-type"].startswith("application/x-ndjson"):
        lines = [json.loads(line) for line in response.text.splitlines()]
        return [line for line in lines if "event" in line]
    return [response.json()]


def sent_to_gateway(gateway: FakeGateway) -> dict[str, str | None]:
    headers = gateway.requests[-1].headers
    return {name: headers.get(name) for name in ("x-ai-request-id", "x-ai-tenant", "x-ai-team")}


def wait_for_output(
    server: ServerProcess, pattern: str, *, since: int = 0, timeout: float = 10.0
) -> str:
    """The first match of ``pattern`` in what the server printed after offset ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := re.search(pattern, server.output[since:]):
            return found.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in the server output:\n{server.output}")


@pytest.mark.parametrize("path", VIEWS)
def test_each_view_sends_the_request_id_tenant_and_team_and_the_next_request_has_none(
    server: ServerProcess, gateway: FakeGateway, path: str
) -> None:
    first = get(server, f"{path}?tenant=acme", headers={"X-AI-Request-Id": "e2e-first"})

    assert first.status_code == 200
    assert first.headers["X-AI-Request-Id"] == "e2e-first"
    assert sent_to_gateway(gateway) == {
        "x-ai-request-id": "e2e-first",
        "x-ai-tenant": "acme",
        "x-ai-team": "support",
    }
    for report in seen_by_view(first):
        assert (report["request_id"], report["tenant"], report["team"]) == (
            "e2e-first",
            "acme",
            "support",
        )

    second = get(server, path)

    assert second.status_code == 200
    assert GENERATED_ID.fullmatch(second.headers["X-AI-Request-Id"])
    assert sent_to_gateway(gateway) == {
        "x-ai-request-id": second.headers["X-AI-Request-Id"],
        "x-ai-tenant": None,
        "x-ai-team": None,
    }


def test_three_consecutive_requests_to_the_async_view_succeed(
    server: ServerProcess, gateway: FakeGateway
) -> None:
    responses = [get(server, "/async", headers={"X-AI-Request-Id": f"async-{n}"}) for n in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["request_id"] for r in responses] == ["async-0", "async-1", "async-2"]
    assert [r.headers["x-ai-request-id"] for r in gateway.requests] == [
        "async-0",
        "async-1",
        "async-2",
    ]


def test_every_log_line_of_a_request_shows_its_id_tenant_and_team(server: ServerProcess) -> None:
    get(server, "/chat?tenant=globex", headers={"X-AI-Request-Id": f"logged-{server.port}"})

    wait_for_output(server, rf"logged-{server.port}.*GET /chat")
    lines = [line for line in server.output.splitlines() if f"logged-{server.port}" in line]
    assert len(lines) >= 3  # the gateway call, the view's line, the Flask request line
    assert all(f"[logged-{server.port} globex/research]" in line for line in lines)


@pytest.mark.parametrize("path", ["/stream", "/stream-ctx"])
def test_a_client_that_leaves_mid_stream_closes_the_body_with_the_context_bound(
    server: ServerProcess, gateway: FakeGateway, path: str
) -> None:
    request_id = f"leaver-{server.port}-{path.strip('/')}"
    gateway.queue_response(delay=1.0)  # the body waits for the gateway while the client leaves

    with httpx.stream(
        "GET",
        f"{server.base_url}{path}?tenant=acme",
        headers={"X-AI-Request-Id": request_id},
        timeout=10.0,
    ) as response:
        first_line = next(response.iter_lines())
    assert json.loads(first_line)["request_id"] == request_id

    wait_for_output(
        server, rf"\[{request_id} acme/support\] example_flask.views: stream closed before the end"
    )
    after = get(server, "/chat")
    assert after.status_code == 200
    assert sent_to_gateway(gateway)["x-ai-tenant"] is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-AI-Request-Id": "has space"},
        {"X-AI-Request-Id": "x" * 200},
        {"X-AI-Request-Id": "<script>alert(1)</script>"},
        {"X-AI-Request-Id": b"caf\xe9"},
        [("X-AI-Request-Id", "one"), ("X-AI-Request-Id", "two")],
        {"X-Request-Id": "-dash-first", "X-AI-Tenant": "\u00e9vil".encode("latin-1")},
    ],
    ids=["space", "too-long", "markup", "latin-1", "repeated", "bad-fallback-and-tenant"],
)
def test_invalid_incoming_ids_are_replaced_and_logged_never_a_500(
    server: ServerProcess, gateway: FakeGateway, headers: Any
) -> None:
    printed_before = len(server.output)

    response = get(server, "/chat", headers=headers)

    assert response.status_code == 200
    request_id = response.headers["X-AI-Request-Id"]
    assert GENERATED_ID.fullmatch(request_id)
    assert sent_to_gateway(gateway)["x-ai-request-id"] == request_id
    wait_for_output(
        server, "ignored invalid incoming X-(AI-)?Request-Id header", since=printed_before
    )


def test_tenant_headers_from_an_untrusted_peer_are_ignored(
    servers: dict[str, ServerProcess], gateway: FakeGateway
) -> None:
    response = get(servers["sync"], "/chat", headers={"X-AI-Tenant": "evil", "X-AI-Team": "root"})

    assert response.status_code == 200
    assert sent_to_gateway(gateway)["x-ai-tenant"] is None
    assert sent_to_gateway(gateway)["x-ai-team"] is None


def test_tenant_headers_from_a_trusted_peer_are_honoured_and_the_resolver_wins(
    servers: dict[str, ServerProcess], gateway: FakeGateway
) -> None:
    headers = {"X-AI-Tenant": "initech", "X-AI-Team": "billing"}

    get(servers["gthread"], "/chat", headers=headers)
    from_headers = sent_to_gateway(gateway)
    get(servers["gthread"], "/chat?tenant=acme", headers=headers)
    from_resolver = sent_to_gateway(gateway)

    assert (from_headers["x-ai-tenant"], from_headers["x-ai-team"]) == ("initech", "billing")
    assert (from_resolver["x-ai-tenant"], from_resolver["x-ai-team"]) == ("acme", "support")


def test_the_example_factory_sends_each_apps_calls_to_its_own_gateway() -> None:
    from example_flask import create_app

    with FakeGateway() as first_gw, FakeGateway() as second_gw:
        first = create_app({"TESTING": True, "AIGW_BASE_URL": first_gw.base_url})
        second = create_app({"TESTING": True, "AIGW_BASE_URL": second_gw.base_url})

        first.test_client().get("/chat?tenant=acme", headers={"X-AI-Request-Id": "one"})
        second.test_client().get("/chat?tenant=globex", headers={"X-AI-Request-Id": "two"})

        assert [
            (r.headers["x-ai-request-id"], r.headers["x-ai-tenant"]) for r in first_gw.requests
        ] == [("one", "acme")]
        assert [
            (r.headers["x-ai-request-id"], r.headers["x-ai-tenant"]) for r in second_gw.requests
        ] == [("two", "globex")]
