"""How this package builds httpx clients: timeouts, proxy choice, cookie policy, client options.

One policy for every client it makes: the gateway clients of :mod:`aigw_middleware.client` and
the SDK's HTTP clients of :mod:`aigw_middleware.openai`.
"""

from __future__ import annotations

import urllib.request
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import ModuleType
from typing import Any

import httpx

from ._version import __version__
from .config import GatewayConfig

#: Seconds to wait for a connection, at most (the per-attempt timeout may be shorter).
CONNECT_TIMEOUT = 5.0


def timeout_for(seconds: float, http: ModuleType = httpx) -> httpx.Timeout:
    """The timeout of one attempt: ``seconds`` to read, write and wait for a connection from the
    pool, at most 5 s to connect. ``http`` is the httpx-compatible package to build it with."""
    timeout: httpx.Timeout = http.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds))
    return timeout


class _RejectAllCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing: no cookie of one call is ever sent on another."""
    return CookieJar(policy=_RejectAllCookies())


def proxy_for(config: GatewayConfig) -> str | None:
    """The explicit proxy, else the environment's proxy for ``base_url`` unless disabled."""
    if config.proxy is not None:
        return config.proxy
    if config.disable_proxy or config.base_url is None:
        return None
    url = httpx.URL(config.base_url)
    if urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def without_credentials(url: str, http: ModuleType = httpx) -> tuple[str, Any]:
    """``url`` without its user and password, and those as ``http.BasicAuth`` (None if none).

    httpx sends a URL's user and password as basic auth, but also shows the URL as it is in its
    own ``HTTP Request: ...`` log line and in its exceptions: moved into the client's ``auth``,
    the same header goes on the wire and the credentials appear in no URL.
    """
    parsed = http.URL(url)
    if not parsed.userinfo:
        return url, None
    bare = str(parsed.copy_with(username=None, password=None))
    return bare, http.BasicAuth(parsed.username, parsed.password)


def client_options(config: GatewayConfig) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client`` / ``httpx.AsyncClient`` for the gateway."""
    headers = {"User-Agent": f"aigw-middleware/{__version__}", **config.extra_headers}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key}"
    base_url, auth = without_credentials(config.base_url or "")
    return {
        "base_url": base_url + "/",
        "auth": auth,
        "headers": headers,
        "timeout": timeout_for(config.timeout),
        "cookies": no_cookie_jar(),
        # Proxies are chosen here, so the environment cannot mount transports that bypass ours.
        "trust_env": False,
        "follow_redirects": False,
    }
