"""Flask integration: the :class:`AIGateway` extension.

``AIGateway(app)``, or ``aigw.init_app(app)`` in an app factory, binds each request's correlation
context for the whole request (``before_request`` functions, error handlers, the view,
``after_request`` functions and a streamed body), echoes ``X-AI-Request-Id`` on every response,
and makes :func:`~aigw_middleware.get_client` / :func:`~aigw_middleware.get_async_client` use the
app's ``AIGW_*`` config inside its app context.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from contextvars import copy_context
from dataclasses import dataclass
from functools import partial
from types import GeneratorType
from typing import TYPE_CHECKING, Any

try:
    from flask import Flask, Response, current_app, has_app_context, request
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aigw_middleware.flask needs Flask: pip install 'aigw-middleware[flask]'"
    ) from exc

from ._parsers import _did_you_mean
from ._shared import SharedClients, add_app_finder
from .client import AsyncGatewayClient, GatewayClient
from .config import _SETTINGS, GatewayConfig, TenantResolver
from .context import CorrelationContext, _current
from .errors import ConfigurationError
from .inbound import InboundPolicy
from .wsgi import _INERT_BODIES, _bound_body, _direct_peer, _echo_names, _start_echoing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["AIGateway"]

#: The key of :class:`_AIGatewayState` in ``app.extensions``.
_EXTENSION_KEY = "aigw"
#: The request's context in the WSGI environ: set by the middleware, refined by the resolver.
_ENVIRON_KEY = "aigw.context"
_CONFIG_PREFIX = "AIGW_"

_logger = logging.getLogger("aigw_middleware")


@dataclass(frozen=True, slots=True)
class _AIGatewayState:
    """What :meth:`AIGateway.init_app` keeps in ``app.extensions["aigw"]`` for one app."""

    config: GatewayConfig
    policy: InboundPolicy
    clients: SharedClients


class AIGateway:
    """The Flask extension: ``AIGateway(app)``, or ``AIGateway()`` then ``init_app(app)``.

    One instance may serve several apps (an app factory); each app keeps its own config and
    shared clients in ``app.extensions["aigw"]``. ``tenant_resolver`` is a callable (or a dotted
    path to one) taking Flask's ``request`` and returning ``(tenant, team)`` or None; it wins
    over ``AIGW_TENANT_RESOLVER``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        tenant_resolver: TenantResolver | str | None = None,
    ) -> None:
        self._tenant_resolver = tenant_resolver
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``.

        Reads these keys from ``app.config`` (each falls back to the environment variable of the
        same name where one exists, then to the default; see :class:`GatewayConfig`):
        ``AIGW_BASE_URL``, ``AIGW_API_KEY``, ``AIGW_PROXY``, ``AIGW_TIMEOUT``,
        ``AIGW_ATTEMPT_DEADLINE``, ``AIGW_CALL_DEADLINE``, ``AIGW_DISABLE_PROXY``,
        ``AIGW_MAX_RETRIES``, ``AIGW_MAX_CONNECTIONS``, ``AIGW_MODEL_PREFIX``,
        ``AIGW_HEADER_PROFILE``, ``AIGW_PROFILE_OPTIONS``, ``AIGW_REQUEST_ID_HEADER``,
        ``AIGW_TENANT_HEADER``, ``AIGW_TEAM_HEADER``, ``AIGW_USER_HEADER``,
        ``AIGW_SESSION_HEADER``, ``AIGW_INCOMING_REQUEST_ID_HEADERS``,
        ``AIGW_TRUST_TENANT_HEADERS_FROM``, ``AIGW_TENANT_RESOLVER``, ``AIGW_ECHO_REQUEST_ID``,
        ``AIGW_PROPAGATE_TO``, ``AIGW_EXTRA_HEADERS``, ``AIGW_API_KEY_RESOLVER``,
        ``AIGW_REQUEST_ID_SOURCE``, ``AIGW_OTEL_SPANS``, ``AIGW_OTEL_BAGGAGE``,
        ``AIGW_OTEL_GATEWAY_ONLY``.

        No defaults are written into ``app.config``: a key present there would hide the
        environment variable. Raises :class:`~aigw_middleware.ConfigurationError` naming the key
        for an invalid or unknown ``AIGW_*`` value, a lower-case ``aigw_*`` key or no gateway
        URL, and ``RuntimeError`` when the app already has the extension. A key without the
        prefix that names a setting (``BASE_URL``) is logged as a warning.
        """
        if _EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"AIGateway is already registered on the Flask app {app.name!r}; "
                "call init_app once per app and share that extension instance."
            )
        overrides: dict[str, Any] = {}
        if self._tenant_resolver is not None:
            overrides["tenant_resolver"] = self._tenant_resolver
        _check_keys(app.config)
        config = GatewayConfig.from_mapping(app.config, prefix=_CONFIG_PREFIX, **overrides)
        if config.base_url is None:
            # Every gateway call would fail: say so now, not at the first request.
            raise ConfigurationError(
                "AIGW_BASE_URL",
                None,
                'is not set: set app.config["AIGW_BASE_URL"] (or the AIGW_BASE_URL environment '
                "variable) to the gateway's root URL before init_app"
                + _unread_key_hint(app.config, "base_url"),
            )
        state = _AIGatewayState(config, InboundPolicy.from_config(config), SharedClients(config))
        app.extensions[_EXTENSION_KEY] = state
        # Apps made per test by a factory would otherwise leave the sync client's sockets open.
        weakref.finalize(app, state.clients.close)
        # Wrapping wsgi_app (not a before_request hook) binds the context before Flask runs any
        # hook, so aborts from hooks registered earlier are handled with the context bound.
        app.wsgi_app = _correlated(app.wsgi_app, state)  # type: ignore[method-assign,assignment]
        if state.policy.resolver is not None:
            app.before_request_funcs.setdefault(None, []).insert(0, _resolve_tenant)
        # get_client() / get_async_client() use the app's clients inside its app contexts, found
        # when they are called (no per-request hook).
        add_app_finder(_current_app_clients)

    @property
    def client(self) -> GatewayClient:
        """The current app's shared :class:`GatewayClient`; needs an app context."""
        return _app_state(current_app).clients.client()

    @property
    def async_client(self) -> AsyncGatewayClient:
        """The current app's :class:`AsyncGatewayClient` for the running event loop."""
        return _app_state(current_app).clients.async_client()


def _check_keys(config: Mapping[str, Any]) -> None:
    """Keys meant for the extension that Flask's config would never hand to it.

    A lower-case ``aigw_…`` key is an error. A bare field name (``BASE_URL``, the Django
    spelling) may belong to another part of the app, so it is a warning.
    """
    flask_keys = [s.flask_key for s in _SETTINGS.values()]
    for key in config:
        if not isinstance(key, str):
            continue
        if key.upper().startswith(_CONFIG_PREFIX) and not key.startswith(_CONFIG_PREFIX):
            raise ConfigurationError(
                key,
                config[key],
                "is not read: the extension reads upper-case AIGW_* keys"
                + _did_you_mean(key, flask_keys),
            )
        if any(key == s.django_key for s in _SETTINGS.values()):
            _logger.warning(
                "app.config[%r] is not read by AIGateway: did you mean %r?",
                key,
                f"{_CONFIG_PREFIX}{key}",
            )


def _unread_key_hint(config: Mapping[str, Any], name: str) -> str:
    """A hint for a setting the config has under its Django spelling, or ``""``."""
    setting = _SETTINGS[name]
    if setting.django_key not in config:
        return ""
    return (
        f"; app.config has {setting.django_key!r}, which is not read: "
        f"did you mean {setting.flask_key!r}?"
    )


def _app_state(app: Flask) -> _AIGatewayState:
    """The extension's state for ``app``; ``RuntimeError`` when it was never registered."""
    state = app.extensions.get(_EXTENSION_KEY)
    if not isinstance(state, _AIGatewayState):
        raise RuntimeError(
            f"AIGateway is not registered on the Flask app {app.name!r}; call init_app(app) first."
        )
    return state


def _correlated(wsgi_app: WSGIApplication, state: _AIGatewayState) -> WSGIApplication:
    """``app.wsgi_app`` wrapped: bind the request's context, echo its ID, bind a streamed body.

    Flask's whole dispatch (its request and app contexts, every hook, error handler and
    teardown function) runs in a Context of the request's own, with its correlation context
    bound. A body that runs code of the app's after Flask has torn its contexts down (a
    generator, ``call_on_close`` functions) runs its steps and ``close()`` in that Context too,
    with the app's clients active. A plain function, not an object with ``__call__``: the
    server calls it once per request.
    """
    policy, keys, clients = state.policy, state.policy.environ_keys, state.clients
    resolved, trusted = policy.resolver is not None, bool(policy.trusted_networks)
    echo = state.config.echo_request_id
    name, lowered = _echo_names(state.config.request_id_header)

    def correlated_wsgi_app(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if resolved:
            # Tenant, team and user are decided once, by _resolve_tenant, which has Flask's
            # request and finds this context in the environ.
            context = CorrelationContext(
                policy.request_id(environ.get, None, keys),
                session=policy.session(environ.get, keys),
            )
            environ[_ENVIRON_KEY] = context
        else:
            context = policy.context_from(
                environ, _direct_peer(environ) if trusted else None, None, keys
            )
        if echo:
            start_response = partial(
                _start_echoing, start_response, name, lowered, context.request_id
            )
        run = copy_context().run
        run(_current.set, context)
        # During the request get_client() finds the app's clients through its app context
        # (_current_app_clients); the body runs outside it, with them active.
        body = run(wsgi_app, environ, start_response)
        if _runs_no_app_code(body):
            return body
        return _bound_body(body, run, environ, clients)

    return correlated_wsgi_app


def _werkzeug_body_shape() -> tuple[type | None, object]:
    """``(ClosingIterator, the code of Werkzeug's encoding generator)`` when the body of a plain
    ``flask.Response`` is built as :func:`_runs_no_app_code` expects (checked once here), else
    ``(None, None)``: every body of Flask's is then bound."""
    response = Response(["probe"])
    body = response.get_app_iter({"REQUEST_METHOD": "GET"})
    callbacks = getattr(body, "_callbacks", None)
    if not (isinstance(callbacks, list) and len(callbacks) == 2):
        return None, None
    encoder, close = callbacks
    generator = getattr(encoder, "__self__", None)
    if getattr(close, "__self__", None) is not response or not isinstance(generator, GeneratorType):
        return None, None
    return type(body), generator.gi_code


_CLOSING_ITERATOR, _ENCODER_CODE = _werkzeug_body_shape()


def _runs_no_app_code(body: Iterable[bytes]) -> bool:
    """True when iterating and closing ``body`` runs Werkzeug's code only: the body of a plain
    ``flask.Response`` (not a subclass) whose content is a list or tuple and that has no
    ``call_on_close`` function, or a list or tuple. Such a body needs no Context around it."""
    if type(body) is not _CLOSING_ITERATOR:
        return type(body) in _INERT_BODIES
    callbacks = body._callbacks  # type: ignore[attr-defined]
    try:
        # [the encoding generator's close, response.close], or [response.close] (HEAD).
        if len(callbacks) == 2:
            if callbacks[0].__self__.gi_code is not _ENCODER_CODE:
                return False
        elif len(callbacks) != 1:
            return False
        # Any method of a plain Response is Werkzeug's or Flask's code.
        response = callbacks[-1].__self__
        return (
            type(response) is Response
            and type(response.response) in _INERT_BODIES
            and not response._on_close
        )
    except AttributeError:  # a callback of another kind
        return False


def _resolve_tenant() -> None:
    """The first ``before_request`` function: tenant, team, user and session from the resolver
    and headers."""
    environ = request.environ
    context = environ.get(_ENVIRON_KEY)
    if not isinstance(context, CorrelationContext):
        return  # not dispatched through app.wsgi_app, e.g. test_request_context()
    policy = _app_state(current_app).policy
    # An async resolver runs as Flask runs async views (asgiref's async_to_sync).
    attribution = (
        current_app.ensure_sync(policy.aattribution)
        if policy.resolver_is_async
        else policy.attribution
    )
    values = attribution(environ.get, _direct_peer(environ), request, policy.environ_keys)
    context = CorrelationContext(context.request_id, **values)
    environ[_ENVIRON_KEY] = context
    # No token kept: the request runs in a Context of its own (see _correlated), where this stays
    # bound for the rest of the request and its body.
    _current.set(context)


def _current_app_clients() -> SharedClients | None:
    """The current app's clients, when there is an app context and the app has the extension."""
    if not has_app_context():
        return None
    state = current_app.extensions.get(_EXTENSION_KEY)
    return state.clients if isinstance(state, _AIGatewayState) else None
