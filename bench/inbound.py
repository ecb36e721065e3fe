"""Inbound groups: one trivial request through a framework, without and with a correlation layer.

Every variant receives the same request (the same headers, an incoming ``X-AI-Request-Id``) and
the peers are configured to do the same job as ``aigw``: read that header, bind the ID where
application code can read it, and echo it on the response. ``check()`` proves all three before
a variant is timed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from bench.measure import Skipped, Variant, VariantFactory

#: The incoming request ID. A UUID, so that peers that validate UUIDs accept it too.
REQUEST_ID = "0f8b1c52-7bd4-4c1e-9a40-3f0c9e2b6a11"
HEADER = "X-AI-Request-Id"

#: What the view reports as bound, while a check runs (None while timing).
_probe: list[Callable[[Any], object]] = []
_seen: list[object] = []


def _look(request: Any) -> None:
    """Called by every view: while a check runs, note what the variant has bound."""
    if _probe:
        _seen.append(_probe[0](request))


def _checker(
    call: Callable[[str], str | None], bound: Callable[[Any], object]
) -> Callable[[], None]:
    """A check: a fresh request ID must be seen bound by the view and echoed on the response."""

    def check() -> None:
        request_id = str(uuid.uuid4())
        _probe[:] = [bound]
        _seen.clear()
        try:
            echoed = call(request_id)
        finally:
            _probe.clear()
        assert _seen == [request_id], f"the view saw {_seen!r}, not {request_id!r}"
        assert echoed == request_id, f"the response echoed {echoed!r}, not {request_id!r}"

    return check


def _baseline_checker(call: Callable[[str], str | None]) -> Callable[[], None]:
    def check() -> None:
        _probe[:] = [lambda request: "viewed"]
        _seen.clear()
        try:
            call(REQUEST_ID)
        finally:
            _probe.clear()
        assert _seen == ["viewed"], "the view did not run"

    return check


def _variant(
    call: Callable[[str], str | None], bound: Callable[[Any], object] | None, note: str = ""
) -> Variant:
    def run(n: int) -> None:
        for _ in range(n):
            call(REQUEST_ID)

    check = _baseline_checker(call) if bound is None else _checker(call, bound)
    return Variant(run=run, check=check, note=note)


def _missing(*modules: str) -> Skipped | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return Skipped(f"{module} is not installed (scripts/bench installs it)")
    return None


def _aigw_bound(request: Any) -> object:
    from aigw_middleware import current_context

    context = current_context()
    return None if context is None else context.request_id


# ---------------------------------------------------------------------------------------------
# WSGI plumbing shared by Django and Flask


def _environ(request_id: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "aigw-bench/1.0",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_X_AI_REQUEST_ID": request_id,
    }


def _wsgi_call(app: Callable[..., Iterable[bytes]]) -> Callable[[str], str | None]:
    echo = HEADER.lower()

    def call(request_id: str) -> str | None:
        found: list[str] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if _probe:  # while a check runs: timed runs pay for no reading of the answer
                for name, value in headers:
                    if name.lower() == echo:
                        found.append(value)
            return None

        body = app(_environ(request_id), start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return found[0] if found else None

    return call


# ---------------------------------------------------------------------------------------------
# ASGI plumbing shared by the bare app, Starlette and Django under ASGI

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The one event loop the async variants of this process run on."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


def _scope(request_id: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"aigw-bench/1.0"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            (b"x-ai-request-id", request_id.encode("latin-1")),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


_REQUEST_MESSAGE = {"type": "http.request", "body": b"", "more_body": False}
_ECHO = HEADER.lower().encode("latin-1")


async def _asgi_once(app: ASGIApp, request_id: str) -> str | None:
    found: list[bytes] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            # Django's ASGI handler listens for a disconnect while the view runs.
            await asyncio.Event().wait()
        received = True
        return dict(_REQUEST_MESSAGE)

    async def send(message: MutableMapping[str, Any]) -> None:
        if _probe and message["type"] == "http.response.start":  # as the WSGI start_response
            for name, value in message.get("headers") or ():
                if bytes(name).lower() == _ECHO:
                    found.append(bytes(value))

    await app(_scope(request_id), receive, send)
    return found[0].decode("latin-1") if found else None


def _asgi_variant(
    app: ASGIApp,
    bound: Callable[[Any], object] | None,
    note: str = "",
    batch: Callable[[], AbstractAsyncContextManager[object]] = nullcontext,
) -> Variant:
    """``batch``: entered around each run of n requests."""
    loop = event_loop()

    async def many(n: int) -> None:
        async with batch():
            for _ in range(n):
                await _asgi_once(app, REQUEST_ID)

    def run(n: int) -> None:
        loop.run_until_complete(many(n))

    def call(request_id: str) -> str | None:
        return loop.run_until_complete(_asgi_once(app, request_id))

    check = _baseline_checker(call) if bound is None else _checker(call, bound)
    return Variant(run=run, check=check, note=note)


# ---------------------------------------------------------------------------------------------
# Django


def _django_setup() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    installed = ["aigw_middleware.django"]
    if importlib.util.find_spec("django_guid") is not None:
        installed.append("django_guid")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF="bench.inbound",
        INSTALLED_APPS=installed,
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
        AIGW={"BASE_URL": "http://127.0.0.1:9/v1"},
        SILENCED_SYSTEM_CHECKS=["aigw.W001"],
        DJANGO_GUID={
            "GUID_HEADER_NAME": HEADER,
            "VALIDATE_GUID": True,
            "RETURN_HEADER": True,
            "EXPOSE_HEADER": False,
        },
        LOG_REQUEST_ID_HEADER="HTTP_X_AI_REQUEST_ID",
        REQUEST_ID_RESPONSE_HEADER=HEADER,
        GENERATE_REQUEST_ID_IF_NOT_IN_HEADER=True,
    )
    django.setup()


def _sync_view(request: Any) -> Any:
    from django.http import HttpResponse

    _look(request)
    return HttpResponse(b"ok", content_type="text/plain")


async def _async_view(request: Any) -> Any:
    from django.http import HttpResponse

    _look(request)
    return HttpResponse(b"ok", content_type="text/plain")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("", _sync_view), path("async/", _async_view)]


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from the ROOT_URLCONF module (this one) when it first routes.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


_DJANGO_MIDDLEWARE = {
    "baseline": [],
    "aigw": ["aigw_middleware.django.AIGatewayMiddleware"],
    "django_guid": ["django_guid.middleware.guid_middleware"],
    "django_log_request_id": ["log_request_id.middleware.RequestIDMiddleware"],
}


def _django_bound(name: str) -> Callable[[Any], object] | None:
    if name == "baseline":
        return None
    if name == "aigw":
        return _aigw_bound
    if name == "django_guid":
        from django_guid import get_guid

        return lambda request: get_guid()
    # It binds a thread-local for its log filter (a thread-local the async view does not share
    # under ASGI) and request.id.
    return lambda request: request.id


def _django_peer_missing(name: str) -> Skipped | None:
    module = {"django_guid": "django_guid", "django_log_request_id": "log_request_id"}.get(name)
    return _missing(module) if module else None


def _django_handler(name: str, asynchronous: bool) -> Any:
    from django.conf import settings

    settings.MIDDLEWARE = _DJANGO_MIDDLEWARE[name]
    try:
        if asynchronous:
            from django.core.handlers.asgi import ASGIHandler

            return ASGIHandler()
        from django.core.handlers.wsgi import WSGIHandler

        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = []


def _django_wsgi(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        missing = _missing("django") or _django_peer_missing(name)
        if missing:
            return missing
        _django_setup()
        handler = _django_handler(name, asynchronous=False)
        return _variant(_wsgi_call(handler), _django_bound(name))

    return make


def _django_asgi(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        missing = _missing("django") or _django_peer_missing(name)
        if missing:
            return missing
        _django_setup()
        handler = _django_handler(name, asynchronous=True)

        async def app(scope: Scope, receive: Any, send: Any) -> None:
            await handler({**scope, "path": "/async/", "raw_path": b"/async/"}, receive, send)

        note = (
            "sync-only middleware: Django adapts it with a thread hop"
            if name == "django_log_request_id"
            else ""
        )
        # The requests of one run share one thread for their sync steps, as asgiref shares one
        # across a ThreadSensitiveContext (Django's handler enters one per request, which is
        # then a no-op). With a new thread per request, what a count read moved with where the
        # process's memory lay, from 20.2k to 25.2k for the same code (see COUNTED_IN_LAYOUTS
        # in run.py); the peers' hops still happen, on that thread.
        from asgiref.sync import ThreadSensitiveContext

        return _asgi_variant(app, _django_bound(name), note, ThreadSensitiveContext)

    return make


# ---------------------------------------------------------------------------------------------
# Bare ASGI and Starlette


async def _bare_app(scope: Scope, receive: Any, send: Any) -> None:
    _look(scope)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _asgi_correlation_bound(request: Any) -> object:
    from asgi_correlation_id import correlation_id

    return correlation_id.get()


def _asgi_wrap(name: str, app: ASGIApp) -> ASGIApp | Skipped:
    if name == "baseline":
        return app
    if name == "aigw":
        from aigw_middleware.asgi import AIGatewayMiddleware

        return AIGatewayMiddleware(app, base_url="http://127.0.0.1:9/v1")
    if name == "aigw_resolver":
        from aigw_middleware.asgi import AIGatewayMiddleware

        # A sync resolver: the middleware calls it in line.
        def resolver(scope: Scope) -> tuple[str, str]:
            if _probe:
                _resolved_on.append(threading.get_ident())
            return "acme", "ml"

        return AIGatewayMiddleware(app, base_url="http://127.0.0.1:9/v1", tenant_resolver=resolver)
    if name == "aigw_async_resolver":
        from aigw_middleware.asgi import AIGatewayMiddleware

        # An async resolver: awaited on the event loop.
        async def async_resolver(scope: Scope) -> tuple[str, str]:
            if _probe:
                _resolved_on.append(threading.get_ident())
            return "acme", "ml"

        return AIGatewayMiddleware(
            app, base_url="http://127.0.0.1:9/v1", tenant_resolver=async_resolver
        )
    missing = _missing("asgi_correlation_id", "starlette")
    if missing:
        return missing
    from asgi_correlation_id import CorrelationIdMiddleware

    return CorrelationIdMiddleware(app, header_name=HEADER)


#: The threads a tenant resolver ran on, while a check runs.
_resolved_on: list[int] = []


def _aigw_bound_with_tenant(request: Any) -> object:
    from aigw_middleware import current_context

    context = current_context()
    assert context is not None, "nothing is bound"
    assert (context.tenant, context.team) == ("acme", "ml"), context
    # The view runs on the event loop's thread: the resolver ran there too, with no thread hop.
    ran_on, _resolved_on[:] = list(_resolved_on), []
    assert ran_on == [threading.get_ident()], "the tenant resolver ran on another thread"
    return context.request_id


def _bound_for(name: str) -> Callable[[Any], object] | None:
    if name == "baseline":
        return None
    if name in ("aigw_resolver", "aigw_async_resolver"):
        return _aigw_bound_with_tenant
    if name.startswith("aigw"):
        return _aigw_bound
    return _asgi_correlation_bound


def _bare_asgi(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        app = _asgi_wrap(name, _bare_app)
        if isinstance(app, Skipped):
            return app
        return _asgi_variant(app, _bound_for(name))

    return make


def _starlette(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        missing = _missing("starlette")
        if missing:
            return missing
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def home(request: Request) -> PlainTextResponse:
            _look(request)
            return PlainTextResponse("ok")

        middleware = []
        if name == "aigw":
            from aigw_middleware.asgi import AIGatewayMiddleware

            middleware = [Middleware(AIGatewayMiddleware, base_url="http://127.0.0.1:9/v1")]
        elif name == "asgi_correlation_id":
            missing = _missing("asgi_correlation_id")
            if missing:
                return missing
            from asgi_correlation_id import CorrelationIdMiddleware

            middleware = [Middleware(CorrelationIdMiddleware, header_name=HEADER)]
        app = Starlette(routes=[Route("/", home)], middleware=middleware)
        return _asgi_variant(app, _bound_for(name))

    return make


# ---------------------------------------------------------------------------------------------
# Flask


def _flask(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        missing = _missing("flask")
        if missing:
            return missing
        from flask import Flask, g, request

        app = Flask("bench")

        @app.get("/")
        def home() -> str:
            _look(request)
            return "ok"

        bound: Callable[[Any], object] | None = None
        note = ""
        if name == "aigw":
            from aigw_middleware.flask import AIGateway

            app.config["AIGW_BASE_URL"] = "http://127.0.0.1:9/v1"
            AIGateway(app)
            bound = _aigw_bound
        elif name == "flask_log_request_id":
            missing = _missing("flask_log_request_id")
            if missing:
                return missing
            from flask_log_request_id import RequestID
            from flask_log_request_id.parser import generic_http_header_parser_for

            RequestID(app, request_id_parser=generic_http_header_parser_for(HEADER))

            @app.after_request
            def echo(response: Any) -> Any:
                # The extension does not echo the ID itself; its docs add this hook.
                response.headers[HEADER] = g.log_request_id
                return response

            # Its own accessor, current_request_id(), imports flask._app_ctx_stack, which Flask 3
            # removed; the value it would read is on flask.g.
            bound = lambda request: g.get("log_request_id")  # noqa: E731
            note = "current_request_id() fails on Flask 3; the ID is read from flask.g"
        return _variant(_wsgi_call(app), bound, note)

    return make


def groups() -> dict[str, dict[str, VariantFactory]]:
    """The inbound groups and their variants, in table order."""
    return {
        "django_wsgi": {
            name: _django_wsgi(name)
            for name in ("baseline", "aigw", "django_guid", "django_log_request_id")
        },
        "django_asgi": {
            name: _django_asgi(name)
            for name in ("baseline", "aigw", "django_guid", "django_log_request_id")
        },
        "asgi": {
            name: _bare_asgi(name)
            for name in (
                "baseline",
                "aigw",
                "aigw_resolver",
                "aigw_async_resolver",
                "asgi_correlation_id",
            )
        },
        "starlette": {
            name: _starlette(name) for name in ("baseline", "aigw", "asgi_correlation_id")
        },
        "flask": {name: _flask(name) for name in ("baseline", "aigw", "flask_log_request_id")},
    }
