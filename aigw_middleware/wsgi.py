"""WSGI middleware for any WSGI application: Falcon, Pyramid, Bottle, or a bare callable.

::

    from aigw_middleware.wsgi import AIGatewayMiddleware

    app = AIGatewayMiddleware(falcon.App())          # Falcon
    app = AIGatewayMiddleware(config.make_wsgi_app())  # Pyramid
    app = AIGatewayMiddleware(bottle.default_app())    # Bottle

Each request gets a context from :class:`~aigw_middleware.inbound.InboundPolicy` (the rules the
Django, Flask and ASGI adapters follow), bound while the application runs and again around each
step of a streamed body and its ``close()``; the response carries ``X-AI-Request-Id``. Nothing
here imports a web framework; the Flask extension uses its WSGI helpers.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ._shared import SharedClients, activate, deactivate
from .config import GatewayConfig
from .context import BoundIterator, _reset_context, _set_context
from .inbound import InboundPolicy

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["AIGatewayMiddleware"]


class AIGatewayMiddleware:
    """Binds a :class:`~aigw_middleware.CorrelationContext` around each request of a WSGI app,
    its streamed body included, and adds the request ID to the response.

    ``AIGatewayMiddleware(app, config=None, **overrides)``: ``overrides`` are
    :class:`~aigw_middleware.GatewayConfig` fields. Without ``config`` the settings come from the
    ``AIGW_*`` environment. When ``config`` or ``overrides`` are given, ``get_client()`` and
    ``get_async_client()`` use that config inside this middleware's requests.

    The ``tenant_resolver`` receives the WSGI ``environ`` as it is when this middleware runs:
    wrap the app with this middleware first, then with the authentication middleware, when the
    resolver reads what that one puts in the environ (``REMOTE_USER``, a session).
    """

    def __init__(
        self, app: WSGIApplication, config: GatewayConfig | None = None, **overrides: Any
    ) -> None:
        self.app = app
        """The wrapped WSGI application."""
        self.config = (
            GatewayConfig.from_env(**overrides) if config is None else config.replace(**overrides)
        )
        """The config: the ``AIGW_*`` environment, or ``config``, with the overrides."""
        self.policy = InboundPolicy.from_config(self.config)
        """The request-ID and tenant trust rules of :attr:`config`."""
        self._clients = None if config is None and not overrides else SharedClients(self.config)
        if self._clients is not None:
            # A middleware made per test would otherwise leave the sync client's sockets open.
            weakref.finalize(self, self._clients.close)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        context = self.policy.context_for(
            lambda name: _header(environ, name), _direct_peer(environ), environ
        )
        if self.config.echo_request_id:
            start_response = _echoing(
                start_response, self.config.request_id_header, context.request_id
            )
        token = _set_context(context)
        # With its own config, get_client() / get_async_client() use it inside its requests.
        clients_token = None if self._clients is None else activate(self._clients)
        try:
            body = self.app(environ, start_response)
        finally:
            if clients_token is not None:
                deactivate(clients_token)
            _reset_context(token)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            return body  # left as it is so the server can use sendfile; no app code runs there
        # The server iterates the body after this frame reset the context: each step and
        # close() (at the end, or when the client went away) bind it again.
        if self._clients is None:
            return BoundIterator(body, context)
        clients = self._clients
        return BoundIterator(body, context, lambda: _clients_active(clients))


@lru_cache(maxsize=64)
def _environ_key(name: str) -> str:
    """The WSGI environ key of an HTTP header: ``X-AI-Team`` is ``HTTP_X_AI_TEAM``."""
    return "HTTP_" + name.upper().replace("-", "_")


def _header(environ: WSGIEnvironment, name: str) -> str | None:
    """The value of header ``name`` (repeated headers already joined by the server), or None."""
    value = environ.get(_environ_key(name))
    return value if isinstance(value, str) else None


def _direct_peer(environ: WSGIEnvironment) -> str | None:
    """The address of the direct peer, also when werkzeug's ``ProxyFix`` rewrote REMOTE_ADDR."""
    # Trust is decided on the connection's peer whether ProxyFix wraps this middleware or not.
    original = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, dict) and original.get("REMOTE_ADDR"):
        return str(original["REMOTE_ADDR"])
    peer = environ.get("REMOTE_ADDR")
    return str(peer) if peer else None


def _echoing(start_response: StartResponse, name: str, value: str) -> StartResponse:
    """``start_response`` with header ``name`` set to ``value``, replacing the app's own."""
    lowered = name.lower()

    def start(
        status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None, /
    ) -> Callable[[bytes], object]:
        headers = [(key, val) for key, val in headers if key.lower() != lowered]
        headers.append((name, value))
        return start_response(status, headers, exc_info)

    return start


@contextlib.contextmanager
def _clients_active(clients: SharedClients) -> Iterator[None]:
    token = activate(clients)
    try:
        yield
    finally:
        deactivate(token)
