"""Isolation under real servers: 50 requests in flight, each call carries only its own request.

The example apps run under gunicorn (gthread, 4 threads; and with ``--preload``, the fork case)
and uvicorn (Django's ASGI handler and the FastAPI example) against one FakeGateway per server. Requests mix plain, streamed and async
views, random request IDs and random tenants and teams; every call the gateway recorded must
carry its originating request's values (mismatches 0), and every request must have made its
call (missing 0).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import free_port, gunicorn, running, uvicorn

from .conftest import Figures
from .gunicorn_preload_warm_up import WARM_UP_REQUEST_ID
from .load import DJANGO_ASGI, DJANGO_WSGI, FASTAPI, FLASK, ExampleApp, run_load, server_env

pytestmark = pytest.mark.e2e

GTHREAD = ("--workers", "1", "--worker-class", "gthread", "--threads", "4")

SERVERS: dict[str, tuple[ExampleApp, Callable[[int], list[str]]]] = {
    "django gunicorn gthread": (
        DJANGO_WSGI,
        lambda port: gunicorn("example_django.project.wsgi:application", port, *GTHREAD),
    ),
    "flask gunicorn gthread": (
        FLASK,
        lambda port: gunicorn("example_flask.app:app", port, *GTHREAD),
    ),
    "django uvicorn": (
        DJANGO_ASGI,
        lambda port: uvicorn("example_django.project.asgi:application", port, "--lifespan", "off"),
    ),
    "fastapi uvicorn": (FASTAPI, lambda port: uvicorn("example_asgi.app:app", port)),
}


def requests_per_server(soak: bool) -> int:
    return 10_000 if soak else 2_000


@pytest.mark.parametrize("server", list(SERVERS))
def test_every_gateway_call_carries_its_own_requests_values(
    server: str, soak: bool, figures: Figures
) -> None:
    app, argv = SERVERS[server]
    port = free_port()
    with FakeGateway() as gateway, running(argv(port), port=port, env=server_env(gateway)) as proc:
        outcome = run_load(app, proc.base_url, gateway, count=requests_per_server(soak))

    figures(f"isolation: {server}", **outcome.figures())
    assert outcome.mismatches == [], outcome.mismatches[:10]
    assert outcome.missing == [], outcome.missing[:10]


def test_gunicorn_preload_workers_never_share_the_masters_connections(
    soak: bool, figures: Figures
) -> None:
    """Defect 1, the fork case: the master used the shared client (eight pooled connections)
    right before forking each of two workers; every call must still carry its own request's
    values, answered on the worker's own connections."""
    port = free_port()
    argv = gunicorn(
        "example_django.project.wsgi:application",
        port,
        "--preload",
        "--config",
        str(Path(__file__).with_name("gunicorn_preload_warm_up.py")),
        *("--workers", "2", "--worker-class", "gthread", "--threads", "4"),
    )
    with FakeGateway() as gateway, running(argv, port=port, env=server_env(gateway)) as server:
        outcome = run_load(
            DJANGO_WSGI,
            server.base_url,
            gateway,
            count=requests_per_server(soak),
            ignore=frozenset({WARM_UP_REQUEST_ID}),
        )
        warm_ups = sum(
            1 for r in gateway.requests if r.headers.get("x-ai-request-id") == WARM_UP_REQUEST_ID
        )

    figures("isolation: django gunicorn --preload, 2 workers", **outcome.figures())
    assert warm_ups > 0, "the master made no call before forking"
    assert outcome.mismatches == [], outcome.mismatches[:10]
    assert outcome.missing == [], outcome.missing[:10]
