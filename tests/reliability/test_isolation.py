"""Isolation under real servers: 50 requests in flight, each call carries only its own request.

The example apps run under gunicorn (gthread, 4 threads) and uvicorn (Django's ASGI handler and
the FastAPI example) against one FakeGateway per server. Requests mix plain, streamed and async
views, random request IDs and random tenants and teams; every call the gateway recorded must
carry its originating request's values (mismatches 0), and every request must have made its
call (missing 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from aigw_middleware.testing import FakeGateway
from example_asgi.tenancy import DEMO_TENANTS as ASGI_TENANTS
from example_django.demo.tenancy import DEMO_USERS
from example_flask.tenancy import DEMO_TENANTS as FLASK_TENANTS
from tests.e2e.servers import free_port, gunicorn, running, uvicorn

from .conftest import Figures
from .load import ExampleApp, run_load

pytestmark = pytest.mark.e2e

# Under gunicorn an async view runs its own event loop per request, with its own client and
# connection: it costs several times a sync view, so it has a smaller share of the mix there.
DJANGO_WSGI = ExampleApp(
    views={"/chat/": 4, "/stream/": 4, "/chat-async/": 1, "/stream-async/": 1},
    demo=DEMO_USERS,
    select=lambda user: ({"X-Demo-User": user}, {}),
)
DJANGO_ASGI = dataclasses.replace(DJANGO_WSGI, views=dict.fromkeys(DJANGO_WSGI.views, 1))
FLASK = ExampleApp(
    views={"/chat": 3, "/stream": 3, "/stream-ctx": 3, "/async": 1},
    demo=FLASK_TENANTS,
    select=lambda tenant: ({}, {"tenant": tenant}),
)
FASTAPI = ExampleApp(
    views={"/chat": 1, "/stream": 1, "/openai": 1, "/background": 1},
    demo=ASGI_TENANTS,
    select=lambda tenant: ({}, {"tenant": tenant}),
    after_response=frozenset({"/background"}),
)
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


def server_env(gateway: FakeGateway) -> dict[str, str]:
    """The example apps' settings: this gateway, tenant headers trusted from loopback."""
    return {
        "DJANGO_SETTINGS_MODULE": "example_django.project.settings",
        "AIGW_BASE_URL": gateway.base_url,
        "AIGW_TRUST_TENANT_HEADERS_FROM": "127.0.0.1/32",
        "AIGW_MAX_RETRIES": "0",
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
