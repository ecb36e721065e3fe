"""The Falcon example app (``example_wsgi``) under a real gunicorn, calling the FakeGateway.

Two gthread workers with two threads each, so requests run side by side in threads and
processes; each test asserts what the gateway received.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ServerProcess, free_port, gunicorn, running

pytestmark = pytest.mark.e2e

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
WORKERS = ("--workers", "2", "--worker-class", "gthread", "--threads", "2")
PARALLEL_REQUESTS = 200


@pytest.fixture(scope="module")
def server(gateway: FakeGateway) -> Iterator[ServerProcess]:
    port = free_port()
    env = {"AIGW_BASE_URL": gateway.base_url, "AIGW_TIMEOUT": "10"}
    with running(gunicorn("example_wsgi.app:app", port, *WORKERS), port=port, env=env) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_gateway(gateway: FakeGateway) -> None:
    gateway.clear()


def get(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(server.base_url + path, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def sent_to_gateway(gateway: FakeGateway) -> dict[str, str | None]:
    headers = gateway.requests[-1].headers
    return {name: headers.get(name) for name in ("x-ai-request-id", "x-ai-tenant", "x-ai-team")}


@pytest.mark.parametrize("path", ["/chat", "/stream"])
def test_the_gateway_receives_the_request_id_tenant_and_team_and_the_next_request_has_none(
    server: ServerProcess, gateway: FakeGateway, path: str
) -> None:
    first = get(server, f"{path}?tenant=acme", headers={"X-AI-Request-Id": "falcon-1"})

    assert first.status_code == 200
    assert first.headers["X-AI-Request-Id"] == "falcon-1"
    assert sent_to_gateway(gateway) == {
        "x-ai-request-id": "falcon-1",
        "x-ai-tenant": "acme",
        "x-ai-team": "support",
    }
    if path == "/stream":  # the body's last line was written after the gateway's stream ended
        end = json.loads(first.text.splitlines()[-1])
        assert (end["event"], end["request_id"], end["tenant"]) == ("end", "falcon-1", "acme")

    second = get(server, path)

    assert second.status_code == 200
    assert GENERATED_ID.fullmatch(second.headers["X-AI-Request-Id"])
    assert sent_to_gateway(gateway) == {
        "x-ai-request-id": second.headers["X-AI-Request-Id"],
        "x-ai-tenant": None,
        "x-ai-team": None,
    }


def test_an_invalid_request_id_is_replaced_and_the_request_succeeds(
    server: ServerProcess, gateway: FakeGateway
) -> None:
    response = get(server, "/chat", headers={"X-AI-Request-Id": "no spaces; <allowed>"})

    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["X-AI-Request-Id"])
    assert sent_to_gateway(gateway)["x-ai-request-id"] == response.headers["X-AI-Request-Id"]


def test_parallel_requests_never_swap_request_ids_tenants_users_or_sessions(
    server: ServerProcess, gateway: FakeGateway
) -> None:
    tenants, users = ("acme", "globex"), {"alice": "u-7f3a9c", "bob": "u-91c2e4"}
    expected = {
        f"p-{n}": {
            "x-ai-tenant": tenants[n % 2],
            "x-ai-user": users[("alice", "bob")[n // 2 % 2]],
            "x-ai-session": f"s-{n}",
        }
        for n in range(PARALLEL_REQUESTS)
    }

    def one(n: int) -> int:
        path = "/stream" if n % 3 == 0 else "/chat"
        query = f"tenant={tenants[n % 2]}&user={('alice', 'bob')[n // 2 % 2]}"
        headers = {"X-AI-Request-Id": f"p-{n}", "X-AI-Session": f"s-{n}"}
        return get(server, f"{path}?{query}", headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(PARALLEL_REQUESTS)))

    assert statuses == [200] * PARALLEL_REQUESTS
    received = {
        request.headers["x-ai-request-id"]: {
            name: request.headers.get(name) for name in ("x-ai-tenant", "x-ai-user", "x-ai-session")
        }
        for request in gateway.requests
    }
    mismatches = [rid for rid, sent in expected.items() if received.get(rid) != sent]
    assert len(gateway.requests) == PARALLEL_REQUESTS
    assert mismatches == []
