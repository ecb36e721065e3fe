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

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ._shared import SharedClients, activate, deactivate
from .config import GatewayConfig
from .context import _reset_context, _set_context
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

    def __init__(
        self, app: _ASGIApp, /, config: GatewayConfig | None = None, **overrides: Any
    ) -> None:
        self.app = app
        if config is None and not overrides:
            self.config = GatewayConfig.from_env()
            self._clients: SharedClients | None = None
        else:
            self.config = (
                GatewayConfig.from_env(**overrides)
                if config is None
                else config.replace(**overrides)
            )
            self._clients = SharedClients(self.config)
        self.policy = InboundPolicy.from_config(self.config)
        self._echo_name = self.config.request_id_header.lower().encode("latin-1")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] not in _CORRELATED_SCOPES:
            await self.app(scope, receive, send)
            if scope["type"] == "lifespan":
                self.close()
            return
        headers = _headers_of(scope)
        client = scope.get("client")
        peer = str(client[0]) if client else None
        context = self.policy.context_for(lambda name: headers.get(name.lower()), peer, scope)
        if self.config.echo_request_id:
            send = self._echoing(send, context.request_id.encode("latin-1"))
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
                headers = list(message.get("headers") or ())
                if not any(bytes(key).lower() == name for key, _ in headers):
                    message = {**message, "headers": [*headers, (name, request_id)]}
            await send(message)

        return send_with_request_id


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
