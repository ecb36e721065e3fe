"""Pure ASGI middleware: one correlation context per HTTP request or websocket connection.

Works with any ASGI application (Starlette, FastAPI, Django's ``get_asgi_application()``, Quart…)
and imports none of them::

    app.add_middleware(AIGatewayMiddleware)          # Starlette / FastAPI
    application = AIGatewayMiddleware(application)   # any ASGI callable

``http`` and ``websocket`` scopes get a context from :class:`~aigw_middleware.inbound.InboundPolicy`;
``lifespan`` and unknown scopes pass through untouched. The context stays bound for the whole
call of the wrapped application, streamed bodies and background tasks included.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._shared import SharedClients, activate, deactivate
from .config import GatewayConfig
from .context import _reset_context, _set_context
from .errors import ConfigurationError
from .inbound import InboundPolicy

__all__ = ["AIGatewayMiddleware"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_CORRELATED_SCOPES = frozenset({"http", "websocket"})
# The messages that carry response headers: an HTTP response, a websocket handshake's 101.
_RESPONSE_STARTS = frozenset({"http.response.start", "websocket.accept"})
# The request ID in the scope, for the layer that adds it outside a framework's error handler.
_SCOPE_KEY = "aigw.request_id"

_logger = logging.getLogger("aigw_middleware")


class AIGatewayMiddleware:
    """Binds a :class:`~aigw_middleware.CorrelationContext` around each HTTP request and websocket
    connection, and adds the request ID to HTTP responses and websocket handshakes.

    ``AIGatewayMiddleware(app, config=None, **overrides)``: ``overrides`` are
    :class:`~aigw_middleware.GatewayConfig` fields. Without ``config`` the settings come from the
    ``AIGW_*`` environment. When ``config`` or ``overrides`` are given, ``get_client()`` and
    ``get_async_client()`` use that config inside this middleware's requests.

    The ``tenant_resolver`` receives the ASGI ``scope``, as it is when this middleware runs:
    place the middleware inside the authentication middleware when the resolver reads
    ``scope["user"]``.
    """

    # `app` is not positional-only: Starlette before 0.42 passes it as a keyword.
    def __init__(
        self, app: _ASGIApp, config: GatewayConfig | None = None, **overrides: Any
    ) -> None:
        self.app = app
        """The wrapped ASGI application."""
        try:
            self.config = (
                GatewayConfig.from_env(**overrides)
                if config is None
                else config.replace(**overrides)
            )
            """The config: the ``AIGW_*`` environment, or ``config``, with the overrides."""
        except ConfigurationError as exc:
            # Starlette builds add_middleware middleware inside the server's lifespan call, and
            # uvicorn's default --lifespan auto hides exceptions there: log it where it shows.
            _logger.error("AIGatewayMiddleware cannot be built: %s", exc)
            raise
        self._clients = None if config is None and not overrides else SharedClients(self.config)
        self._error_responses_covered = False
        self.policy = InboundPolicy.from_config(self.config)
        """The request-ID and tenant trust rules of :attr:`config`."""
        self._echo_name = self.config.request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if not self._error_responses_covered:
            self._cover_error_responses(scope.get("app"))
        if scope["type"] not in _CORRELATED_SCOPES:
            await self.app(scope, receive, send)
            if scope["type"] == "lifespan":
                self.close()
            return
        headers = _headers_of(scope)
        client = scope.get("client")
        peer = str(client[0]) if client else None
        get_header = lambda name: headers.get(name.lower())  # noqa: E731
        if self.policy.resolver_is_async:
            # Awaited here, on the event loop: no thread hop.
            context = await self.policy.acontext_for(get_header, peer, scope)
        else:
            context = self.policy.context_for(get_header, peer, scope)
        if self.config.echo_request_id:
            send = self._echoing(send, context.request_id.encode("latin-1"))
            scope[_SCOPE_KEY] = context.request_id
        token = _set_context(context)
        # With its own config, get_client() / get_async_client() use it inside its requests.
        clients_token = None if self._clients is None else activate(self._clients)
        try:
            await self.app(scope, receive, send)
        finally:
            if clients_token is not None:
                deactivate(clients_token)
            _reset_context(token)

    def close(self) -> None:
        """Close the shared sync client made for this middleware's own config, if any.

        Runs by itself when the server's lifespan ends; async clients close with their loops.
        """
        if self._clients is not None:
            self._clients.close()

    def _echoing(self, send: _Send, request_id: bytes) -> _Send:
        name = self._echo_name

        async def send_with_request_id(message: _Message) -> None:
            if message["type"] in _RESPONSE_STARTS:
                message = _with_header(message, name, request_id)
            await send(message)

        return send_with_request_id

    def _cover_error_responses(self, app: Any) -> None:
        """Add the request ID to the 500 that Starlette's error middleware sends.

        Starlette and FastAPI run ``add_middleware`` middleware inside ``ServerErrorMiddleware``,
        so the response for an unhandled exception never passes through this one. The app's
        built stack (``middleware_stack``, that error middleware outermost) is wrapped once in
        a layer that adds the ID this middleware chose. It runs from the lifespan call, before
        any request, or else from the first request on.
        """
        self._error_responses_covered = True
        stack = getattr(app, "middleware_stack", None)
        if (
            self.config.echo_request_id
            and stack is not None
            and hasattr(app, "build_middleware_stack")
            and not isinstance(stack, _ErrorResponseEcho)
        ):
            app.middleware_stack = _ErrorResponseEcho(stack, self._echo_name)


class _ErrorResponseEcho:
    """Outside a framework's error handler: adds the request ID that the
    :class:`AIGatewayMiddleware` inside chose to a response that did not pass through it."""

    def __init__(self, app: _ASGIApp, name: bytes) -> None:
        self.app = app
        self._name = name

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_request_id(message: _Message) -> None:
            request_id = scope.get(_SCOPE_KEY)
            if message["type"] == "http.response.start" and isinstance(request_id, str):
                message = _with_header(message, self._name, request_id.encode("latin-1"))
            await send(message)

        await self.app(scope, receive, send_with_request_id)


def _with_header(message: _Message, name: bytes, value: bytes) -> _Message:
    """``message`` with the header ``name: value`` added, unless it has that header already."""
    headers = list(message.get("headers") or ())
    if any(bytes(key).lower() == name for key, _ in headers):
        return message
    return {**message, "headers": [*headers, (name, value)]}


def _headers_of(scope: _Scope) -> dict[str, str | None]:
    """Request headers by lower-case name, repeated ones joined as :func:`_joined` does."""
    grouped: dict[str, list[str]] = {}
    for key, value in scope.get("headers") or ():
        grouped.setdefault(bytes(key).decode("latin-1").lower(), []).append(
            bytes(value).decode("latin-1")
        )
    return {name: _joined(values) for name, values in grouped.items()}


def _joined(values: Iterable[str]) -> str | None:
    """Repeated header values as one string, the way Django and the ASGI spec combine them."""
    items = list(values)
    return ", ".join(items) if items else None
