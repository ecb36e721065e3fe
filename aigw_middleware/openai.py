"""The official OpenAI SDK clients, wired through the correlation transport.

``OpenAI(**kwargs)`` and ``AsyncOpenAI(**kwargs)`` are the SDK's ``openai.OpenAI`` and
``openai.AsyncOpenAI`` with ``base_url``, ``api_key``, ``timeout``, ``max_retries`` and
``default_headers`` taken from the active :class:`~aigw_middleware.GatewayConfig` (the one
``get_client()`` uses), and an ``http_client`` whose transport adds the correlation headers to
calls to the gateway only. Keyword arguments you pass win.

Both SDK generations work: openai 2.x builds on ``httpx``, openai 3.x on ``httpx2``; the HTTP
client is made with the package the installed SDK uses. Retries stay in the SDK (from
``max_retries``); the transport never retries.
"""

from __future__ import annotations

import importlib
import sys
from contextvars import ContextVar
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

try:
    import openai
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aigw_middleware.openai needs the OpenAI SDK: pip install 'aigw-middleware[openai]'"
    ) from exc

from . import _otel, _otel_sdk
from ._httpx import (
    inner_transport,
    keeping_no_cookies,
    no_cookie_jar,
    timeout_for,
    without_credentials,
)
from ._shared import current_config
from .config import GatewayConfig, _missing_base_url
from .context import _safe_context, bind_context, current_context
from .transport import (
    _API_KEY_EXTENSION,
    AsyncCorrelationTransport,
    CorrelationTransport,
    _profile_of,
    _resolve_api_key,
)

__all__ = ["PLACEHOLDER_API_KEY", "AsyncOpenAI", "OpenAI"]

PLACEHOLDER_API_KEY = "aigw-placeholder"
"""The API key sent when a gateway ``base_url`` is configured without ``api_key``: the SDK
refuses to start without one, and many gateways hold the provider keys themselves."""

#: The span of the SDK call running in this context, for the SDK's per-attempt hooks below.
_sdk_span: ContextVar[_otel.CallSpan | None] = ContextVar("aigw_openai_span", default=None)


class _KeepsGatewayConfig:
    """``copy`` (and ``with_options``) keep the gateway config, following a new base URL: a
    copy pointed at another URL gets an HTTP client whose transport treats that URL as the
    gateway (unless the copy is given an ``http_client`` of its own)."""

    gateway_config: GatewayConfig
    base_url: Any
    """The SDK's base URL: the gateway's, from the config or the ``base_url=`` argument."""
    _asynchronous = False

    # Hidden from type checkers, which then see the SDK's own typed signatures (``Self``).
    if not TYPE_CHECKING:

        def copy(self, *args, **kwargs):
            """The SDK's ``copy`` (also ``with_options``), keeping this client's gateway config."""
            new_url = kwargs.get("base_url")
            config = self.gateway_config
            if new_url is not None:
                config = _config_for(config, {"base_url": new_url})
            if config.base_url != self.gateway_config.base_url and not kwargs.get("http_client"):
                http = _http_module()
                kwargs["base_url"], auth = without_credentials(str(new_url), http)
                kwargs["http_client"] = _http_client(
                    http, config, auth, asynchronous=self._asynchronous
                )
            copied = super().copy(*args, **kwargs)
            copied.gateway_config = config
            return copied

        with_options = copy
        """The SDK's ``with_options``: :meth:`copy`, keeping this client's gateway config."""

        def _calculate_retry_timeout(self, *args, **kwargs):
            delay = super()._calculate_retry_timeout(*args, **kwargs)
            _retry_coming(delay)
            return delay


class OpenAI(_KeepsGatewayConfig, openai.OpenAI):
    """``openai.OpenAI`` configured for the gateway, with correlation headers on every call.

    ``OpenAI(config=None, **kwargs)``: ``kwargs`` are the SDK's own arguments and win over the
    config; ``config`` (first, or by keyword) defaults to the one ``get_client()`` uses. With no
    gateway URL there and no ``base_url`` argument, :class:`~aigw_middleware.ConfigurationError`
    is raised rather than calling the provider uncorrelated. Every logical call (all its
    retries) carries one request ID: the bound context's, else a fresh one. With
    ``model_prefix`` set, a ``"model"`` without ``/`` in a request body is sent prefixed.
    """

    def __init__(self, config: GatewayConfig | None = None, **kwargs: Any) -> None:
        self.gateway_config = _config_for(_checked(config, type(self)), kwargs)
        """The gateway config this client was built from (the SDK's own arguments applied)."""
        super().__init__(**_sdk_arguments(self.gateway_config, kwargs, asynchronous=False))

    if not TYPE_CHECKING:  # type checkers see the SDK's typed overloads

        def request(self, *args, **kwargs):
            """The SDK's ``request``, made in a bound context (a fresh one for all the
            retries of the call when none is bound), with its OpenTelemetry span."""
            if current_context() is None:
                with bind_context():
                    return self.request(*args, **kwargs)
            call = _sdk_call(self.gateway_config, args, kwargs)
            if call is None:
                return super().request(*args, **kwargs)
            token = _sdk_span.set(call)
            try:
                result = super().request(*args, **kwargs)
            except BaseException as exc:
                _otel.failed(call, exc)
                raise
            finally:
                _sdk_span.reset(token)
                _otel.detach(call)
            return _otel_sdk.sdk_result(call, result)

        def _process_response(self, *args, **kwargs):
            _otel_sdk.sdk_response(_sdk_span.get(), kwargs["response"])
            return super()._process_response(*args, **kwargs)

    def _prepare_options(self, options: Any) -> Any:
        return super()._prepare_options(_for_gateway(self.gateway_config, options))

    def _prepare_request(self, request: Any) -> None:
        super()._prepare_request(request)
        _attempt_started()
        _resolve_key_early(self.gateway_config, request)


class AsyncOpenAI(_KeepsGatewayConfig, openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` configured for the gateway; see :class:`OpenAI`."""

    _asynchronous = True

    def __init__(self, config: GatewayConfig | None = None, **kwargs: Any) -> None:
        self.gateway_config = _config_for(_checked(config, type(self)), kwargs)
        """The gateway config this client was built from (the SDK's own arguments applied)."""
        super().__init__(**_sdk_arguments(self.gateway_config, kwargs, asynchronous=True))

    if not TYPE_CHECKING:  # type checkers see the SDK's typed overloads

        async def request(self, *args, **kwargs):
            """The SDK's ``request``; see :meth:`OpenAI.request`."""
            if current_context() is None:
                with bind_context():
                    return await self.request(*args, **kwargs)
            call = _sdk_call(self.gateway_config, args, kwargs)
            if call is None:
                return await super().request(*args, **kwargs)
            token = _sdk_span.set(call)
            try:
                result = await super().request(*args, **kwargs)
            except BaseException as exc:
                _otel.failed(call, exc)
                raise
            finally:
                _sdk_span.reset(token)
                _otel.detach(call)
            return _otel_sdk.sdk_result(call, result)

        async def _process_response(self, *args, **kwargs):
            _otel_sdk.sdk_response(_sdk_span.get(), kwargs["response"])
            return await super()._process_response(*args, **kwargs)

    async def _prepare_options(self, options: Any) -> Any:
        return await super()._prepare_options(_for_gateway(self.gateway_config, options))

    async def _prepare_request(self, request: Any) -> None:
        await super()._prepare_request(request)
        _attempt_started()
        _resolve_key_early(self.gateway_config, request)


def _checked(config: object, cls: type) -> GatewayConfig | None:
    """``config`` when it is a :class:`GatewayConfig` or None; a ``TypeError`` otherwise."""
    if config is None or isinstance(config, GatewayConfig):
        return config
    raise TypeError(
        f"{cls.__name__}() takes a GatewayConfig as its first argument (or as config=), "
        f"not a {type(config).__name__}; pass the SDK's own arguments by keyword, "
        "such as api_key=..."
    )


def _sdk_call(
    config: GatewayConfig, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _otel.CallSpan | None:
    """The span of one SDK call (``request(cast_to, options, ...)``), or None."""
    options = args[1] if len(args) > 1 else kwargs.get("options")
    context = current_context()
    if options is None or context is None:
        return None
    return _otel.start_call(
        config, options.method, options.url, options.json_data, context, sdk=True
    )


def _attempt_started() -> None:
    """The SDK sends one more attempt of the call (its retry loop prepares each request)."""
    call = _sdk_span.get()
    if call is not None:
        call.attributes["aigw.attempts"] = call.attributes.get("aigw.attempts", 0) + 1


def _retry_coming(delay: float) -> None:
    """The SDK waits ``delay`` seconds before a retry; it asks for the delay while it handles
    the attempt's error: a status error (the cause is its status) or a transport error."""
    call = _sdk_span.get()
    if call is None:
        return
    error = sys.exc_info()[1]
    status = getattr(getattr(error, "response", None), "status_code", None)
    cause = str(status) if isinstance(status, int) else type(error).__name__
    _otel.retrying(call, call.attributes.get("aigw.attempts", 1), delay, cause)


def _config_for(config: GatewayConfig | None, kwargs: dict[str, Any]) -> GatewayConfig:
    config = config or current_config()
    base_url = kwargs.get("base_url")
    if base_url is None and config.base_url is None:
        # Else the SDK would call the provider directly, without any correlation.
        raise _missing_base_url(", or pass base_url= to talk to a URL of your choice")
    # The SDK talks to the base_url it is given, so that is where the headers belong.
    if base_url is not None and str(base_url).rstrip("/") != config.base_url:
        config = config.replace(base_url=str(base_url))
    return config


def _http_module() -> ModuleType:
    """``httpx`` or ``httpx2``: the package the installed SDK builds its HTTP clients on."""
    if issubclass(openai.DefaultHttpxClient, httpx.Client):
        return httpx
    return importlib.import_module("httpx2")


def _sdk_arguments(
    config: GatewayConfig, kwargs: dict[str, Any], *, asynchronous: bool
) -> dict[str, Any]:
    arguments = dict(kwargs)
    http = _http_module()
    if config.base_url is not None:
        arguments.setdefault("base_url", config.base_url)
        arguments.setdefault("api_key", config.api_key or PLACEHOLDER_API_KEY)
    elif config.api_key is not None:
        arguments.setdefault("api_key", config.api_key)
    arguments.setdefault("timeout", timeout_for(config.timeout, http))
    arguments.setdefault("max_retries", config.max_retries)
    if config.extra_headers:
        arguments["default_headers"] = {
            **config.extra_headers,
            **(arguments.get("default_headers") or {}),
        }
    if "http_client" not in arguments:
        # The URL's user and password go as the client's basic auth, never in a logged URL.
        auth = None
        if arguments.get("base_url") is not None:
            arguments["base_url"], auth = without_credentials(str(arguments["base_url"]), http)
        arguments["http_client"] = _http_client(http, config, auth, asynchronous=asynchronous)
    return arguments


def _http_client(http: ModuleType, config: GatewayConfig, auth: Any, *, asynchronous: bool) -> Any:
    # The SDK's own client classes keep its redirect defaults; the pool limits go to the
    # transport, since a client applies its own only to the transport it builds itself.
    # trust_env=False: proxies are chosen here, so the environment cannot mount transports
    # that bypass the correlation transport.
    inner = inner_transport(config, http, asynchronous=asynchronous)
    client: Any
    if asynchronous:
        client = openai.DefaultAsyncHttpxClient(
            transport=AsyncCorrelationTransport(inner, config),
            cookies=no_cookie_jar(),
            auth=auth,
            trust_env=False,
        )
    else:
        client = openai.DefaultHttpxClient(
            transport=CorrelationTransport(inner, config),
            cookies=no_cookie_jar(),
            auth=auth,
            trust_env=False,
        )
    return keeping_no_cookies(client)


def _for_gateway(config: GatewayConfig, options: Any) -> Any:
    """One attempt's options with the model prefix and the profile's body fields applied."""
    body = options.json_data
    if not isinstance(body, dict):
        return options
    profile = _profile_of(config)
    if not config.model_prefix and not profile.body:
        return options  # nothing to change
    changed = dict(body)
    if config.model_prefix and isinstance(body.get("model"), str):
        changed["model"] = config.prefixed_model(body["model"])
    context = current_context()
    if profile.body and context is not None and not _is_absolute(options.url):
        changed = profile.body_fields(changed, _safe_context(context))
    if changed != body:
        # options is the SDK's per-attempt copy; the caller's body dict stays untouched.
        options.json_data = changed
    return options


def _is_absolute(url: object) -> bool:
    return isinstance(url, str) and url.startswith(("http://", "https://"))


def _resolve_key_early(config: GatewayConfig, request: Any) -> None:
    """Resolve the attempt's gateway key before the SDK sends it.

    A resolver that fails then raises its ConfigurationError from the call itself: raised in
    the transport, the SDK would retry it and report a connection error.
    """
    if config.api_key_resolver is None:
        return
    context = current_context()
    if context is not None:
        request.extensions[_API_KEY_EXTENSION] = _resolve_api_key(
            config.api_key_resolver, _safe_context(context)
        )
