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

import contextvars
import weakref
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ._shared import SharedClients
from .config import GatewayConfig
from .context import _carry, _current
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
        self._echo = _echo_names(self.config.request_id_header)
        self._clients = None if config is None and not overrides else SharedClients(self.config)
        if self._clients is not None:
            # A middleware made per test would otherwise leave the sync client's sockets open.
            weakref.finalize(self, self._clients.close)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        policy = self.policy
        # The peer decides only whether tenant headers are trusted: looked up only then.
        peer = _direct_peer(environ) if policy.trusted_networks else None
        context = policy.context_from(environ, peer, environ, policy.environ_keys)
        if self.config.echo_request_id:
            start_response = partial(
                _start_echoing, start_response, *self._echo, context.request_id
            )
        if self._clients is not None:
            # With its own config, get_client() / get_async_client() use it inside its requests
            # (and its body's steps): the context carries its clients.
            _carry(context, self._clients)
        # The request runs in a Context of its own (see _bound_body).
        run = contextvars.copy_context().run
        run(_current.set, context)
        body = run(self.app, environ, start_response)
        if type(body) in _INERT_BODIES:
            return body
        return _bound_body(body, run, environ, None)


def _direct_peer(environ: WSGIEnvironment) -> str | None:
    """The address of the direct peer, also when werkzeug's ``ProxyFix`` rewrote REMOTE_ADDR."""
    # Trust is decided on the connection's peer whether ProxyFix wraps this middleware or not.
    original = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, dict) and original.get("REMOTE_ADDR"):
        return str(original["REMOTE_ADDR"])
    peer = environ.get("REMOTE_ADDR")
    return str(peer) if peer else None


#: Bodies whose iteration runs no code of the app's and that have no ``close()``: they need no
#: Context around them (exact types: a subclass may define both).
_INERT_BODIES = (list, tuple)


def _echo_names(name: str) -> tuple[str, str]:
    """The echoed header's name as sent and in lower case, for :func:`_start_echoing`."""
    return name, name.lower()


def _start_echoing(
    start_response: StartResponse,
    name: str,
    lowered: str,
    value: str,
    status: str,
    headers: list[tuple[str, str]],
    exc_info: OptExcInfo | None = None,
    /,
) -> Callable[[bytes], object]:
    """``start_response`` (bound to its first four arguments with ``functools.partial``) with
    header ``name`` set to ``value``, replacing the app's own."""
    size = len(name)
    for key, _ in headers:
        # Names of another length cannot match: most are skipped without lower-casing them.
        if len(key) == size and key.lower() == lowered:
            headers = [(key, val) for key, val in headers if key.lower() != lowered]
            break
    return start_response(status, [*headers, (name, value)], exc_info)


def _bound_body(
    body: Iterable[bytes],
    run: Callable[..., Any],
    environ: WSGIEnvironment,
    clients: SharedClients | None,
) -> Iterable[bytes]:
    """``body`` with its steps and ``close()`` run in the request's Context.

    ``run`` enters that Context: a copy of the server's, made per request, in which the app ran
    with the request's context bound. Whatever the app binds stays there, so nothing leaks into
    the server's thread, and the body's steps and its ``close()`` see what the app saw: entering
    a Context costs far less than binding and resetting context variables around each step.
    ``clients``, when given, serve ``get_client()`` in the body's steps: the context bound in
    that Context (the app's own, which carries none) carries them.
    """
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        return body  # left as it is so the server can use sendfile; no app code runs there
    if clients is not None:
        run(_carry_on_bound, clients)
    return _ContextBody(body, run)


def _carry_on_bound(clients: SharedClients) -> None:
    """Let the context bound here carry ``clients``."""
    context = _current.get()
    if context is not None:
        _carry(context, clients)


class _ContextBody:
    """A response body whose steps and ``close()`` run in the request's Context.

    The server iterates the body after the app's call returned: each step (the body is turned
    into an iterator at the first one) and ``close()`` (at the end, or when the client went away
    mid-stream) run in that Context, and nothing is bound in the server's thread between them.
    """

    __slots__ = ("_body", "_run", "_step")

    def __init__(self, body: Iterable[bytes], run: Callable[..., Any]) -> None:
        self._body = body
        self._run = run
        self._step: Callable[[], bytes] = self._first

    def __iter__(self) -> _ContextBody:
        return self

    def __next__(self) -> bytes:
        return self._run(self._step)  # type: ignore[no-any-return]

    def _first(self) -> bytes:
        self._step = iter(self._body).__next__
        return self._step()

    def close(self) -> None:
        """Close the body (when it can be closed) in the request's Context."""
        close = getattr(self._body, "close", None)
        if close is None and self._step != self._first:
            close = getattr(getattr(self._step, "__self__", None), "close", None)
        if close is not None:
            self._run(close)
