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
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._shared import SharedClients
from .config import GatewayConfig
from .context import _carry, _current
from .errors import ConfigurationError
from .inbound import InboundPolicy

__all__ = ["AIGatewayMiddleware"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

# The messages that carry response headers: an HTTP response, a websocket handshake's 101.
_RESPONSE_STARTS = frozenset({"http.response.start", "websocket.accept"})
# The request ID in the scope, for the layer that adds it outside a framework's error handler.
_SCOPE_KEY = "aigw.request_id"

_logger = logging.getLogger("aigw_middleware")

# The kinds of header name in AIGatewayMiddleware._kinds: a lower-case name the policy does not
# read, the first request-ID header, the session header, another one the policy reads.
_NOT_WANTED, _FIRST_ID, _SESSION, _OTHER_WANTED = range(4)
# How many names, and how long a name, _learn keeps: a bound on what requests can make it hold.
_KNOWN_NAMES_MAX = 256
_KNOWN_NAME_LENGTH_MAX = 64


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
        # True once a layer outside the framework's error handler reads the ID from the scope.
        self._scope_echo = False
        self.policy = InboundPolicy.from_config(self.config)
        """The request-ID and tenant trust rules of :attr:`config`."""
        self._echo_name = self.config.request_id_header.lower().encode("latin-1")
        self._echo = self.config.echo_request_id
        # The few headers the policy may read, by their lower-case name in the scope.
        self._wanted = {
            key.encode("latin-1"): key for key in self.policy.wanted(self.policy.lowercase_keys)
        }
        keys = self.policy.lowercase_keys
        # For a headers-only policy, the one pass of __call__ reads each header name's kind
        # here: the first request-ID header's, the session's, another one the policy reads,
        # or a lower-case name it does not (learnt from requests, see _learn).
        self._kinds: dict[bytes, int] | None = None
        if self.policy._headers_only:
            self._kinds = dict.fromkeys(self._wanted, _OTHER_WANTED)
            self._kinds[keys.request_id[0].encode("latin-1")] = _FIRST_ID
            self._kinds[keys.session.encode("latin-1")] = _SESSION

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if not self._error_responses_covered:
            self._cover_error_responses(scope.get("app"))
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            if kind == "lifespan":
                self.close()
            return
        context = echoed = None
        headers = scope.get("headers")
        kinds = self._kinds
        if kinds is not None and type(headers) is list:
            # Headers only decide, and each header name is a known one: the raw ID and session
            # in one pass; anything else takes the general path below.
            first = session = None
            try:
                for key, value in headers:
                    kind = kinds[key]  # KeyError: a name not seen yet; a bytearray: TypeError
                    if kind:
                        if kind == _FIRST_ID and first is None:
                            first = value
                        elif kind == _SESSION and session is None:
                            session = value
                        else:
                            break  # repeated, or another request-ID header
                else:
                    context = self.policy._raw_context(first, session)
                    echoed = first if type(first) is bytes and context is not None else None
            except KeyError:
                _learn(kinds, headers)
            except TypeError:
                pass
        if context is None:  # by the policy's general rules
            policy = self.policy
            wanted = _wanted_headers(scope, self._wanted)
            peer = _peer(scope) if policy.trusted_networks else None
            if policy.resolver_is_async:
                # Awaited here, on the event loop: no thread hop.
                context = await policy.acontext_for(wanted.get, peer, scope, policy.lowercase_keys)
            else:
                context = policy.context_from(wanted, peer, scope, policy.lowercase_keys)
        if self._echo:
            request_id = context.request_id
            if self._scope_echo:
                scope[_SCOPE_KEY] = request_id
            send = _echoing(
                send,
                (self._echo_name, echoed or request_id.encode("latin-1")),
                scope if self._scope_echo else None,
            )
        if self._clients is not None:
            # With its own config, get_client() / get_async_client() use it inside its requests.
            _carry(context, self._clients)
        token = _current.set(context)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)

    def close(self) -> None:
        """Close the shared sync client made for this middleware's own config, if any.

        Runs by itself when the server's lifespan ends; async clients close with their loops.
        """
        if self._clients is not None:
            self._clients.close()

    def _cover_error_responses(self, app: Any) -> None:
        """Add the request ID to the 500 that Starlette's error middleware sends.

        Starlette and FastAPI run ``add_middleware`` middleware inside ``ServerErrorMiddleware``,
        so the response for an unhandled exception never passes through this one. It runs
        once, from the lifespan call before any request, or else from the first request, and
        changes the app's built stack (``middleware_stack``, that error middleware outermost):

        - when this middleware is the first of the app's middleware, directly inside the error
          middleware (which leaves the scope alone), the two change places: this middleware
          then binds the context and adds the ID outside the error middleware, around the 500
          and the app's error handlers too. (A request under way when that happens passes the
          error middleware twice, which only passes its messages on.)
        - else a layer outside adds the ID this middleware chose to a response that did not
          pass through it.
        """
        self._error_responses_covered = True
        stack = getattr(app, "middleware_stack", None)
        if (
            not self.config.echo_request_id
            or stack is None
            or not hasattr(app, "build_middleware_stack")
        ):
            return
        if getattr(stack, "app", None) is self:
            # The error middleware calls what this middleware wrapped; this one wraps it.
            stack.app, self.app = self.app, stack
            app.middleware_stack = self
            return
        # The layer reads the chosen ID from the scope, this middleware's or another's.
        self._scope_echo = True
        if not isinstance(stack, _ErrorResponseEcho):
            app.middleware_stack = _ErrorResponseEcho(stack, self._echo_name)


class _ErrorResponseEcho:
    """Outside a framework's error handler: adds the request ID that the
    :class:`AIGatewayMiddleware` inside chose to a response that did not pass through it."""

    def __init__(self, app: _ASGIApp, name: bytes) -> None:
        self.app = app
        self._name = name

    # Not a coroutine function: it returns the wrapped app's awaitable, one frame fewer.
    def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        name = self._name

        def send_with_request_id(message: _Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                # Still there when the response did not pass through the middleware.
                request_id = scope.get(_SCOPE_KEY)
                if isinstance(request_id, str):
                    # The middleware's own echo, made for this one message (a rare path).
                    return _echoing(send, (name, request_id.encode("latin-1")), None)(message)
            return send(message)

        return self.app(scope, receive, send_with_request_id)


def _echoing(send: _Send, header: tuple[bytes, bytes], scope: _Scope | None) -> _Send:
    """``send`` that adds ``header`` (the request ID's) to the response start (or websocket
    accept); and takes the ID out of ``scope``, if given, for the layer outside the error
    handler."""

    # Not a coroutine function: it hands back send's awaitable, one coroutine fewer per message.
    def send_with_request_id(message: _Message) -> Awaitable[None]:
        if message["type"] in _RESPONSE_STARTS:
            if scope is not None:
                # The response has its ID: the outer layer has nothing to add.
                scope.pop(_SCOPE_KEY, None)
            headers = message.get("headers") or ()
            name = header[0]
            size = len(name)
            for key, _ in headers:
                if len(key) == size and bytes(key).lower() == name:
                    return send(message)  # set by the app: not added twice
            message = message.copy() if type(message) is dict else dict(message)
            message["headers"] = [*headers, header]
        return send(message)

    return send_with_request_id


def _learn(kinds: dict[bytes, int], headers: list[Any]) -> None:
    """Let ``kinds`` know the lower-case header names of ``headers`` that it does not, as names
    the policy does not read (the ones it reads are there from the start), up to a bound.

    A name in another case, or past the bound, is never learnt: a request that has one takes
    the general path each time, which reads names in any case.
    """
    for key, _ in headers:
        if (
            len(kinds) < _KNOWN_NAMES_MAX
            and type(key) is bytes
            and len(key) <= _KNOWN_NAME_LENGTH_MAX
            and key.islower()
            and key not in kinds
        ):
            kinds[key] = _NOT_WANTED


def _peer(scope: _Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _wanted_headers(scope: _Scope, wanted: dict[bytes, str]) -> dict[str, str]:
    """The ``wanted`` request headers of ``scope`` by lower-case name, decoded as latin-1.

    Only those are decoded; repeated ones are joined with ``", "``, the way Django and the ASGI
    spec combine them.
    """
    found: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        try:
            known = key in wanted
        except TypeError:  # a bytearray: unhashable
            key = bytes(key)
            known = key in wanted
        name: str | None
        if known:
            name = wanted[key]
        elif key.islower():
            continue  # lower case, as servers send them: not one of ours
        else:
            name = wanted.get(key.lower())
            if name is None:
                continue
        text = value.decode("latin-1")
        found[name] = f"{found[name]}, {text}" if name in found else text
    return found
