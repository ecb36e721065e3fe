"""HTTP clients for any httpx-based SDK, wired for the gateway.

``httpx_client()`` / ``async_httpx_client()`` for SDKs built on ``httpx`` (Anthropic 0.x,
OpenAI 2.x and LangChain's ``ChatOpenAI`` over it), ``httpx2_client()`` /
``async_httpx2_client()`` for those built on ``httpx2`` (Anthropic 1.x and later, OpenAI 3.x)::

    Anthropic(base_url=..., http_client=httpx2_client())
    ChatOpenAI(base_url=..., http_client=httpx_client())

Each client sends through the correlation transport (the X-AI headers to the gateway only, the
gateway's ``extra_headers`` too), with the gateway's timeout, its proxy, no cookies kept and no
proxy or ``.netrc`` taken from the environment. The SDK keeps its own base URL, key and retries.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import httpx

from ._httpx import inner_transport, keeping_no_cookies, no_cookie_jar, timeout_for
from .config import GatewayConfig, _missing_base_url
from .transport import AsyncCorrelationTransport, CorrelationTransport

__all__ = ["async_httpx2_client", "async_httpx_client", "httpx2_client", "httpx_client"]


def httpx_client(config: GatewayConfig | None = None, **overrides: Any) -> httpx.Client:
    """An ``httpx.Client`` for an SDK's ``http_client=`` argument, wired for the gateway.

    ``config`` defaults to the one ``get_client()`` uses; ``overrides`` are
    :class:`~aigw_middleware.GatewayConfig` fields. Raises
    :class:`~aigw_middleware.ConfigurationError` when no gateway URL is set: the headers would
    go nowhere.
    """
    client: httpx.Client = _client(httpx, _config(config, overrides), asynchronous=False)
    return client


def async_httpx_client(config: GatewayConfig | None = None, **overrides: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` wired for the gateway; see :func:`httpx_client`."""
    client: httpx.AsyncClient = _client(httpx, _config(config, overrides), asynchronous=True)
    return client


def httpx2_client(config: GatewayConfig | None = None, **overrides: Any) -> Any:
    """An ``httpx2.Client`` wired for the gateway, for SDKs built on httpx2 (Anthropic 1.x and
    later, OpenAI 3.x); see :func:`httpx_client`. Needs the ``httpx2`` package."""
    return _client(_httpx2(), _config(config, overrides), asynchronous=False)


def async_httpx2_client(config: GatewayConfig | None = None, **overrides: Any) -> Any:
    """An ``httpx2.AsyncClient`` wired for the gateway; see :func:`httpx2_client`."""
    return _client(_httpx2(), _config(config, overrides), asynchronous=True)


def _config(config: GatewayConfig | None, overrides: dict[str, Any]) -> GatewayConfig:
    if config is None:
        # Imported here: the package imports this module before .client, which _shared needs.
        from ._shared import current_config

        config = current_config()
    config = config.replace(**overrides)
    if config.base_url is None:
        raise _missing_base_url(", or pass base_url= to httpx_client()")
    return config


def _httpx2() -> ModuleType:
    try:
        return importlib.import_module("httpx2")
    except ImportError as exc:
        raise ImportError(
            "httpx2_client() and async_httpx2_client() need the httpx2 package, which SDKs "
            "built on it install: pip install httpx2"
        ) from exc


def _client(http: ModuleType, config: GatewayConfig, *, asynchronous: bool) -> Any:
    """A client of ``http`` (``httpx`` or ``httpx2``) sending through the correlation
    transport. trust_env=False: the proxy is chosen here, so the environment cannot mount
    transports that bypass the correlation transport."""
    options: dict[str, Any] = {
        "timeout": timeout_for(config.timeout, http),
        "cookies": no_cookie_jar(),
        "headers": config.extra_headers,
        "trust_env": False,
    }
    inner = inner_transport(config, http, asynchronous=asynchronous)
    if asynchronous:
        client = http.AsyncClient(transport=AsyncCorrelationTransport(inner, config), **options)
    else:
        client = http.Client(transport=CorrelationTransport(inner, config), **options)
    return keeping_no_cookies(client)
