"""Specification of aigw_middleware.asgi: the pure ASGI middleware.

Starlette, FastAPI and Django apps run in-process under ``httpx.ASGITransport``; websocket and
lifespan scopes are driven directly with the ASGI messages a server would send.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, JsonResponse
from django.urls import path
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from aigw_middleware import bind_context, current_context, get_async_client, get_client
from aigw_middleware._shared import active
from aigw_middleware.asgi import (
    _KNOWN_NAME_LENGTH_MAX,
    _KNOWN_NAMES_MAX,
    AIGatewayMiddleware,
    _wanted_headers,
)
from aigw_middleware.config import GatewayConfig
from aigw_middleware.context import (
    AsyncBoundIterator,
    CorrelationContext,
    _reset_context,
    _set_context,
)
from aigw_middleware.testing import FakeGateway

from .disconnect import serve_to_a_client_that_leaves

HEX_ID = re.compile(r"[0-9a-f]{32}")
MESSAGES = [{"role": "user", "content": "hi"}]


def seen() -> dict[str, str | None]:
    context = current_context()
    assert context is not None, "no correlation context is bound"
    return {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "user": context.user,
        "session": context.session,
    }


async def call_gateway() -> None:
    await get_async_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def plain(request: Request) -> JSONResponse:
    await call_gateway()
    return JSONResponse(seen())


async def streaming(request: Request) -> StreamingResponse:
    async def body() -> Any:
        yield b"start\n"
        await call_gateway()
        yield (seen()["request_id"] or "").encode()

    return StreamingResponse(body(), media_type="text/plain")


async def background(request: Request) -> JSONResponse:
    return JSONResponse(seen(), background=BackgroundTask(call_gateway))


async def context_only(request: Request) -> JSONResponse:
    return JSONResponse(seen())


async def sets_own_header(request: Request) -> Response:
    return Response("ok", headers={"X-AI-Request-Id": "set-by-the-app"})


async def fails(request: Request) -> Response:
    raise RuntimeError("boom")


ROUTES = [
    Route("/plain", plain),
    Route("/stream", streaming),
    Route("/background", background),
    Route("/context", context_only),
    Route("/own-header", sets_own_header),
    Route("/fails", fails),
]


def starlette_app(**options: Any) -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(AIGatewayMiddleware, **options)])


def client_for(app: Any, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=10)


@pytest.mark.parametrize("route", ["/plain", "/stream", "/background"])
async def test_gateway_calls_from_plain_streaming_and_background_code_carry_the_request_id(
    route: str, fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    async with client_for(starlette_app(config=gateway_config)) as client:
        response = await client.get(route, headers={"X-AI-Request-Id": "req-incoming-1"})

    assert response.status_code == 200
    assert response.headers["x-ai-request-id"] == "req-incoming-1"
    assert [r.headers["x-ai-request-id"] for r in fake_gateway.requests] == ["req-incoming-1"]


async def test_a_request_without_an_id_gets_a_fresh_one_on_the_response_and_the_gateway_call(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    async with client_for(starlette_app(config=gateway_config)) as client:
        first = await client.get("/plain")
        second = await client.get("/plain")

    request_id = first.headers["x-ai-request-id"]
    assert HEX_ID.fullmatch(request_id)
    assert first.json()["request_id"] == request_id
    assert fake_gateway.requests[0].headers["x-ai-request-id"] == request_id
    assert second.headers["x-ai-request-id"] != request_id


async def test_the_request_id_is_echoed_on_error_responses(gateway_config: GatewayConfig) -> None:
    async with client_for(starlette_app(config=gateway_config)) as client:
        response = await client.get("/missing", headers={"X-Request-Id": "req-404"})

    assert response.status_code == 404
    assert response.headers["x-ai-request-id"] == "req-404"


async def test_a_request_id_header_set_by_the_app_is_not_duplicated(
    gateway_config: GatewayConfig,
) -> None:
    async with client_for(starlette_app(config=gateway_config)) as client:
        response = await client.get("/own-header", headers={"X-AI-Request-Id": "req-1"})

    assert response.headers.get_list("x-ai-request-id") == ["set-by-the-app"]


async def test_echo_request_id_false_leaves_the_response_alone(
    gateway_config: GatewayConfig,
) -> None:
    app = starlette_app(config=gateway_config, echo_request_id=False)
    async with client_for(app) as client:
        response = await client.get("/context", headers={"X-AI-Request-Id": "req-1"})

    assert response.json()["request_id"] == "req-1"
    assert "x-ai-request-id" not in response.headers


async def test_repeated_request_id_headers_are_joined_and_so_rejected(
    gateway_config: GatewayConfig,
) -> None:
    async with client_for(starlette_app(config=gateway_config)) as client:
        response = await client.get(
            "/context", headers=[("X-AI-Request-Id", "req-a"), ("X-AI-Request-Id", "req-b")]
        )

    assert HEX_ID.fullmatch(response.json()["request_id"])


async def test_tenant_headers_count_only_from_trusted_peers(gateway_config: GatewayConfig) -> None:
    app = starlette_app(config=gateway_config, trust_tenant_headers_from=["10.0.0.0/8"])
    headers = {"X-AI-Tenant": "acme", "X-AI-Team": "search"}

    async with client_for(app, peer="10.1.2.3") as trusted:
        from_trusted = (await trusted.get("/context", headers=headers)).json()
    async with client_for(app, peer="203.0.113.9") as untrusted:
        from_untrusted = (await untrusted.get("/context", headers=headers)).json()

    assert (from_trusted["tenant"], from_trusted["team"]) == ("acme", "search")
    assert (from_untrusted["tenant"], from_untrusted["team"]) == (None, None)


async def test_the_tenant_resolver_receives_the_asgi_scope(gateway_config: GatewayConfig) -> None:
    received: list[Any] = []

    def resolver(scope: Any) -> tuple[str, str]:
        received.append(scope)
        return scope["query_string"].decode().removeprefix("tenant="), "web"

    async with client_for(starlette_app(config=gateway_config, tenant_resolver=resolver)) as c:
        body = (await c.get("/context?tenant=acme")).json()

    assert (body["tenant"], body["team"]) == ("acme", "web")
    assert received[0]["type"] == "http"
    assert received[0]["path"] == "/context"


async def test_an_async_resolver_is_awaited_on_the_event_loop_thread(
    gateway_config: GatewayConfig,
) -> None:
    threads: list[int] = []

    async def resolver(scope: Any) -> dict[str, str]:
        threads.append(threading.get_ident())
        await asyncio.sleep(0)
        return {"tenant": scope["query_string"].decode().removeprefix("tenant="), "team": "web"}

    async with client_for(starlette_app(config=gateway_config, tenant_resolver=resolver)) as c:
        body = (await c.get("/context?tenant=acme")).json()

    assert (body["tenant"], body["team"]) == ("acme", "web")
    assert threads == [threading.get_ident()]


async def test_the_resolver_user_and_the_incoming_session_are_bound(
    gateway_config: GatewayConfig,
) -> None:
    def resolver(scope: Any) -> dict[str, str]:
        return {"tenant": "acme", "user": "u-42"}

    async with client_for(starlette_app(config=gateway_config, tenant_resolver=resolver)) as c:
        response = await c.get("/context", headers={"X-AI-Session": "chat-7"})

    body = response.json()
    assert (body["tenant"], body["user"], body["session"]) == ("acme", "u-42", "chat-7")


async def test_without_arguments_the_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIGW_TRUST_TENANT_HEADERS_FROM", "127.0.0.1/32")
    app = Starlette(routes=ROUTES, middleware=[Middleware(AIGatewayMiddleware)])

    async with client_for(app) as client:
        body = (await client.get("/context", headers={"X-AI-Tenant": "from-env"})).json()

    assert body["tenant"] == "from-env"


async def test_an_unhandled_error_leaves_no_context_bound(gateway_config: GatewayConfig) -> None:
    app = AIGatewayMiddleware(Starlette(routes=ROUTES), gateway_config)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/fails", headers={"X-AI-Request-Id": "req-500"})

    assert response.status_code == 500
    assert response.headers["x-ai-request-id"] == "req-500"
    assert current_context() is None


class TokenBackend(AuthenticationBackend):
    """``Authorization: Bearer <tenant>`` logs in a user named after the tenant."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(token)


class AddsHeader(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["X-Seen-By"] = "base-http"
        return response


def tenant_of_user(scope: Any) -> tuple[str, None] | None:
    user = scope.get("user")
    return (user.username, None) if user is not None and user.is_authenticated else None


async def test_stacked_with_base_http_middleware_and_auth_no_error_and_no_leak(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(AddsHeader),
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
            Middleware(AIGatewayMiddleware, config=gateway_config, tenant_resolver=tenant_of_user),
            Middleware(AddsHeader),
        ],
    )

    async with client_for(app) as client:
        signed_in = await client.get("/plain", headers={"Authorization": "Bearer acme"})
        anonymous = await client.get("/plain")

    assert (signed_in.status_code, anonymous.status_code) == (200, 200)
    assert signed_in.json()["tenant"] == "acme"
    assert anonymous.json()["tenant"] is None
    assert anonymous.json()["request_id"] != signed_in.json()["request_id"]
    assert signed_in.headers["x-seen-by"] == "base-http"
    tenants = [r.headers.get("x-ai-tenant") for r in fake_gateway.requests]
    assert tenants == ["acme", None]


async def test_fastapi_add_middleware_binds_the_context(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig
) -> None:
    api = FastAPI()
    api.add_middleware(AIGatewayMiddleware, config=gateway_config)

    @api.get("/ask")
    async def ask() -> dict[str, str | None]:
        await call_gateway()
        return seen()

    async with client_for(api) as client:
        response = await client.get("/ask", headers={"X-AI-Request-Id": "req-fastapi"})

    assert response.json()["request_id"] == "req-fastapi"
    assert response.headers["x-ai-request-id"] == "req-fastapi"
    assert fake_gateway.requests[0].headers["x-ai-request-id"] == "req-fastapi"


# Driving scopes by hand, as a server would.


class Channel:
    """The receive/send pair of one ASGI connection."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(10)  # a server would wait for the client here
        raise AssertionError("the app asked for more messages than the test provides")

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))


async def run(app: Callable[..., Any], scope: dict[str, Any], channel: Channel) -> None:
    await asyncio.wait_for(app(scope, channel.receive, channel.send), timeout=5)


async def respond(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_its_own_config_serves_get_client_in_every_rebinding_within_a_request(
    gateway_config: GatewayConfig,
) -> None:
    served: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(active())
        with bind_context(tenant="acme"):
            served.append(active())
        token = _set_context(CorrelationContext("task-1"))  # as a task run eagerly binds its own
        try:
            served.append(active())
        finally:
            _reset_context(token)
        await asyncio.to_thread(lambda: served.append(active()))
        await respond(scope, receive, send)

    middleware = AIGatewayMiddleware(app, gateway_config)
    await run(middleware, {"type": "http", "headers": []}, Channel())

    assert served == [middleware._clients] * 4
    assert active() is not middleware._clients  # outside its requests: the process default


def echoed_ids(channel: Channel) -> list[bytes]:
    """The values of the request-ID headers of the response start the app sent."""
    start = channel.sent[0]
    assert start["type"] == "http.response.start"
    return [value for key, value in start["headers"] if key == b"x-ai-request-id"]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-new-name", b"1"), (b"x-ai-request-id", b"req-1")],  # a name not seen yet
        [(b"X-Other", b"1"), (b"x-ai-request-id", b"req-1")],  # another case
        [(b"accept", b"*/*"), (b"X-AI-Request-Id", b"req-1")],  # the ID's name in another case
    ],
)
async def test_header_names_it_has_not_learnt_take_the_general_path_to_the_same_context(
    gateway_config: GatewayConfig, headers: list[tuple[bytes, bytes]]
) -> None:
    middleware = AIGatewayMiddleware(respond, gateway_config)
    for _ in range(2):  # before and after it learns the lower-case names
        channel = Channel()
        await run(middleware, {"type": "http", "headers": list(headers)}, channel)
        assert echoed_ids(channel) == [b"req-1"]
    known = middleware._kinds
    assert known is not None
    assert {name for name, _ in headers if name.islower()} <= known.keys()
    assert not any(name in known for name, _ in headers if not name.islower())


async def test_it_learns_a_bounded_number_of_short_header_names(
    gateway_config: GatewayConfig,
) -> None:
    middleware = AIGatewayMiddleware(respond, gateway_config)
    known = middleware._kinds
    assert known is not None
    long_name = b"x-" + b"a" * _KNOWN_NAME_LENGTH_MAX
    for batch in range(_KNOWN_NAMES_MAX // 50 + 1):
        names = [b"x-name-%d-%d" % (batch, i) for i in range(50)]
        scope = {"type": "http", "headers": [(name, b"1") for name in [long_name, *names]]}
        await run(middleware, scope, Channel())

    assert len(known) == _KNOWN_NAMES_MAX
    assert long_name not in known


async def test_a_websocket_connection_gets_a_request_id_bound(
    gateway_config: GatewayConfig,
) -> None:
    async def echo_context(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(seen())
        await websocket.close()

    app = starlette_app(config=gateway_config)
    app.router.routes.append(WebSocketRoute("/ws", echo_context))
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"x-ai-request-id", b"req-ws-1"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "scheme": "ws",
        "subprotocols": [],
    }
    channel = Channel({"type": "websocket.connect"})

    await run(app, scope, channel)

    assert [m["type"] for m in channel.sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert '"request_id":"req-ws-1"' in channel.sent[1]["text"]
    assert (b"x-ai-request-id", b"req-ws-1") in channel.sent[0]["headers"]


async def test_lifespan_passes_through_with_nothing_bound(gateway_config: GatewayConfig) -> None:
    events: list[tuple[str, object]] = []

    async def lifespan(app: Any) -> Any:
        events.append(("startup", current_context()))
        yield
        events.append(("shutdown", current_context()))

    app = AIGatewayMiddleware(
        Starlette(routes=ROUTES, lifespan=asynccontextmanager(lifespan)), gateway_config
    )
    channel = Channel({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})

    await run(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, channel)

    assert events == [("startup", None), ("shutdown", None)]
    assert [m["type"] for m in channel.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_unknown_scopes_reach_the_app_untouched(gateway_config: GatewayConfig) -> None:
    received: list[tuple[dict[str, Any], object]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append((scope, current_context()))
        await send({"type": "custom.done"})

    channel = Channel()
    scope = {"type": "custom", "headers": [(b"x-ai-request-id", b"req-x")]}

    await run(AIGatewayMiddleware(app, gateway_config), scope, channel)

    assert received == [(scope, None)]
    assert channel.sent == [{"type": "custom.done"}]


# Django under ASGI, wrapped as a whole.


def django_view(request: HttpRequest) -> JsonResponse:
    get_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return JsonResponse(seen())


urlpatterns = [path("django/", django_view)]


async def test_it_serves_django_when_wrapping_the_asgi_application(
    fake_gateway: FakeGateway, gateway_config: GatewayConfig, settings: Any
) -> None:
    from django.core.asgi import get_asgi_application

    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = []
    app = AIGatewayMiddleware(get_asgi_application(), gateway_config)

    try:
        async with client_for(app) as client:
            response = await client.get("/django/", headers={"X-AI-Request-Id": "req-django"})
    finally:
        app.close()

    assert response.status_code == 200
    assert response.json()["request_id"] == "req-django"
    assert response.headers["x-ai-request-id"] == "req-django"
    assert fake_gateway.requests[0].headers["x-ai-request-id"] == "req-django"


served_in_view: list[object] = []


def django_view_that_notes_its_clients(request: HttpRequest) -> JsonResponse:
    served_in_view.append(active())
    return JsonResponse(seen())


urlpatterns.append(path("django-clients/", django_view_that_notes_its_clients))


async def test_under_django_middleware_inside_it_a_view_gets_the_inner_adapters_clients(
    gateway_config: GatewayConfig, settings: Any
) -> None:
    from django.core.asgi import get_asgi_application

    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["aigw_middleware.django.AIGatewayMiddleware"]
    app = AIGatewayMiddleware(get_asgi_application(), gateway_config)
    served_in_view.clear()

    try:
        async with client_for(app) as client:
            response = await client.get("/django-clients/", headers={"X-AI-Request-Id": "req-1"})
    finally:
        app.close()

    assert response.json()["request_id"] == "req-1"
    # The Django middleware bound a context of its own: settings.AIGW's clients serve the view.
    assert served_in_view == [active()]
    assert served_in_view[0] is not app._clients


def test_only_the_wanted_headers_are_read_whatever_their_case_and_repeats_are_joined() -> None:
    scope = {
        "headers": [
            (b"host", b"example.com"),
            (b"x-ai-request-id", b"a"),
            (b"X-Request-Id", b"upper"),
            (bytearray(b"x-ai-request-id"), bytearray(b"b")),
            (b"x-ai-session", b"caf\xe9"),
        ]
    }
    wanted = {b"x-ai-request-id": "x-ai-request-id", b"x-request-id": "x-request-id"}

    assert _wanted_headers(scope, wanted) == {"x-ai-request-id": "a, b", "x-request-id": "upper"}
    assert _wanted_headers({"headers": []}, wanted) == {}


async def test_a_streamed_body_wrapped_in_async_bound_iterator_cleans_up_bound_on_disconnect(
    gateway_config: GatewayConfig,
) -> None:
    cleanup: list[str | None] = []

    async def endless(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"part\n"
            finally:
                context = current_context()
                cleanup.append(context.request_id if context else None)

        return StreamingResponse(AsyncBoundIterator(body(), current_context()))

    app = Starlette(
        routes=[Route("/endless", endless)],
        middleware=[Middleware(AIGatewayMiddleware, config=gateway_config)],
    )
    await serve_to_a_client_that_leaves(app, "/endless", "req-gone")

    assert cleanup == ["req-gone"]


async def test_after_the_first_request_every_response_still_carries_the_id_once(
    gateway_config: GatewayConfig,
) -> None:
    app = starlette_app(config=gateway_config)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = [
            await client.get(route, headers={"X-AI-Request-Id": f"req-{n}"})
            for n, route in enumerate(["/context", "/context", "/own-header", "/missing", "/fails"])
        ]

    assert [r.headers.get_list("x-ai-request-id") for r in responses] == [
        ["req-0"],
        ["req-1"],
        ["set-by-the-app"],
        ["req-3"],
        ["req-4"],
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 500]


async def test_the_500_handler_runs_with_the_requests_context_and_the_answer_carries_its_id(
    gateway_config: GatewayConfig,
) -> None:
    # First of the app's middleware: after the first request it serves from outside Starlette's
    # error middleware, so the app's 500 handler runs inside the request's context.
    handled: list[str | None] = []

    async def on_error(request: Request, exc: Exception) -> Response:
        context = current_context()
        handled.append(context.request_id if context else None)
        return PlainTextResponse("failed", status_code=500)

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(AIGatewayMiddleware, config=gateway_config)],
        exception_handlers={500: on_error},
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = [
            await client.get(route, headers={"X-AI-Request-Id": f"req-{n}"})
            for n, route in enumerate(["/context", "/fails", "/context"])
        ]

    assert [r.headers.get_list("x-ai-request-id") for r in responses] == [
        ["req-0"],
        ["req-1"],
        ["req-2"],
    ]
    assert [r.json()["request_id"] for r in (responses[0], responses[2])] == ["req-0", "req-2"]
    assert handled == ["req-1"]
    assert current_context() is None


class PassesOn:
    """A pure ASGI middleware that does nothing (BaseHTTPMiddleware on old Starlette leaves a
    memory stream unclosed when the app raises)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def test_behind_another_middleware_the_500_still_carries_the_chosen_id(
    gateway_config: GatewayConfig,
) -> None:
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(PassesOn),
            Middleware(AIGatewayMiddleware, config=gateway_config),
        ],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        responses = [
            await client.get(route, headers={"X-AI-Request-Id": f"req-{n}"})
            for n, route in enumerate(["/context", "/fails", "/fails", "/context"])
        ]

    assert [r.status_code for r in responses] == [200, 500, 500, 200]
    assert [r.headers.get_list("x-ai-request-id") for r in responses] == [
        ["req-0"],
        ["req-1"],
        ["req-2"],
        ["req-3"],
    ]


async def bound_and_echoed(
    app_config: GatewayConfig, headers: Any
) -> tuple[str | None, str | None, list[bytes]]:
    """The request ID and session an app sees, and the request-ID headers of its response."""
    seen_here: list[tuple[str | None, str | None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        context = current_context()
        assert context is not None
        seen_here.append((context.request_id, context.session))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    channel = Channel()
    scope = {"type": "http", "path": "/", "headers": headers, "client": ("127.0.0.1", 5)}
    await run(AIGatewayMiddleware(app, app_config), scope, channel)
    return seen_here[0][0], seen_here[0][1], echoed_ids(channel)


@pytest.mark.parametrize(
    ("headers", "request_id", "session"),
    [
        ([(b"host", b"h"), (b"x-ai-request-id", b"0f8b1c52-7bd4")], "0f8b1c52-7bd4", None),
        ([(b"x-ai-request-id", b"req_1:a/b")], "req_1:a/b", None),
        ([(b"X-AI-Request-Id", b"mixed-1"), (b"Host", b"h")], "mixed-1", None),
        ([(bytearray(b"x-ai-request-id"), b"ba-1")], "ba-1", None),
        ([(b"x-ai-request-id", bytearray(b"ba-2"))], "ba-2", None),
        (((b"x-ai-request-id", b"tuple-1"),), "tuple-1", None),
        ([(b"x-request-id", b"second-1")], "second-1", None),
        ([(b"x-request-id", b"second-2"), (b"x-ai-request-id", b"first-2")], "first-2", None),
        ([(b"x-ai-request-id", b"a-1"), (b"x-ai-request-id", b"b-2")], None, None),
        ([(b"x-ai-request-id", b"a-1"), (b"X-AI-Request-Id", b"b-2")], None, None),
        ([(b"x-ai-request-id", b"-starts-with-a-hyphen")], None, None),
        ([(b"x-ai-request-id", b"a" * 129)], None, None),
        ([(b"x-ai-request-id", b"")], None, None),
        ([(b"x-ai-request-id", "caf\xe9".encode("latin-1"))], None, None),
        ([(b"x-ai-session", b"chat-7"), (b"x-ai-request-id", b"r-1")], "r-1", "chat-7"),
        ([(b"x-ai-session", b"chat:7"), (b"x-ai-request-id", b"r-2")], "r-2", "chat:7"),
        ([(b"X-AI-Session", b"chat-8"), (b"x-ai-request-id", b"r-3")], "r-3", "chat-8"),
        ([(b"x-ai-session", b"s-1"), (b"x-ai-session", b"s-2")], None, None),
        ([(b"x-ai-session", b"bad session")], None, None),
    ],
)
async def test_request_ids_and_sessions_follow_the_rules_whatever_the_header_list(
    gateway_config: GatewayConfig, headers: Any, request_id: str | None, session: str | None
) -> None:
    bound_id, bound_session, echoed = await bound_and_echoed(gateway_config, headers)

    assert bound_id is not None
    if request_id is None:  # none valid: a fresh one
        assert HEX_ID.fullmatch(bound_id)
    else:
        assert bound_id == request_id
    assert bound_session == session
    assert echoed == [bound_id.encode("latin-1")]


@pytest.mark.parametrize(
    "own",
    [
        (b"x-ai-request-id", b"own-1"),
        (b"X-AI-Request-Id", b"own-1"),
        (bytearray(b"X-Ai-Request-Id"), b"own-1"),
    ],
)
async def test_a_request_id_header_set_by_a_bare_app_is_not_duplicated_whatever_its_case(
    gateway_config: GatewayConfig, own: tuple[Any, bytes]
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [own]})
        await send({"type": "http.response.body", "body": b""})

    channel = Channel()
    scope = {"type": "http", "headers": [(b"x-ai-request-id", b"req-1")]}
    await run(AIGatewayMiddleware(app, gateway_config), scope, channel)

    assert channel.sent[0]["headers"] == [own]


async def test_the_echo_leaves_the_apps_message_alone_and_a_reused_message_gets_each_id(
    gateway_config: GatewayConfig,
) -> None:
    start: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": []}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)  # the same dict for every response
        await send({"type": "http.response.body", "body": b""})

    middleware = AIGatewayMiddleware(app, gateway_config)
    echoed = []
    for request_id in (b"req-1", b"req-2"):
        channel = Channel()
        await run(
            middleware, {"type": "http", "headers": [(b"x-ai-request-id", request_id)]}, channel
        )
        echoed.append(channel.sent[0]["headers"])

    assert echoed == [[(b"x-ai-request-id", b"req-1")], [(b"x-ai-request-id", b"req-2")]]
    assert start["headers"] == []
