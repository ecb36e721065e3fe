"""Isolation under real servers: 50 requests in flight, each call carries only its own request.

The example apps run under gunicorn (gthread, 4 threads) and uvicorn (Django's ASGI handler and
the FastAPI example) against one FakeGateway per server. Requests mix plain, streamed and async
views, random request IDs and random tenants and teams; every call the gateway recorded must
carry its originating request's values (mismatches 0), and every request must have made its
call (missing 0).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import free_port, gunicorn, running, uvicorn

from .conftest import Figures
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
