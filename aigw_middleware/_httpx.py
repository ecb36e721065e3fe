"""How this package builds httpx clients: timeouts, proxy choice, cookie policy, client options.

One policy for every client it makes: the gateway clients of :mod:`aigw_middleware.client` and
the SDK's HTTP clients of :mod:`aigw_middleware.openai`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, KeysView
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import ModuleType
from typing import Any

import httpcore
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


#: Idle connections a pool keeps open, at most (the OpenAI SDK's figure).
MAX_KEEPALIVE_CONNECTIONS = 100


def limits_for(config: GatewayConfig, http: ModuleType = httpx) -> httpx.Limits:
    """The connection pool of a client for the gateway: ``max_connections`` open at once (a
    burst beyond httpx's default of 100 would wait for the pool and time out), at most 100
    kept open while idle. Only the transport applies limits: pass them to it."""
    limits: httpx.Limits = http.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=min(config.max_connections, MAX_KEEPALIVE_CONNECTIONS),
    )
    return limits


def ssl_context(http: ModuleType = httpx) -> Any:
    """One TLS context per process for every transport built here, as httpx's defaults make it.

    A transport otherwise loads the CA bundle into a context of its own: one per client, so a
    client per event loop (``asyncio.run`` in a loop) grows the resident set by tens of KB per
    loop in OpenSSL's allocations. A context holds settings and CAs, no connection, so sharing
    it across clients, threads and forks is safe.
    """
    return _ssl_context(http)


@functools.cache
def _ssl_context(http: ModuleType) -> Any:
    # Keyed by the module alone, so ssl_context() and ssl_context(httpx) are one context.
    return http.create_ssl_context()


#: The wall-clock deadline (``time.monotonic()``) of the attempt whose blocking I/O runs here,
#: and what names it in the timeout it ends with (called only then).
#: Set it around one blocking step with ``set`` and ``reset`` (:func:`deadline_bound` does).
deadline_var: contextvars.ContextVar[tuple[float, Callable[[], str]] | None] = (
    contextvars.ContextVar("aigw_attempt_deadline", default=None)
)


@contextlib.contextmanager
def deadline_bound(deadline: float, name: Callable[[], str]) -> Iterator[None]:
    """Every blocking read, write and connect of the sync clients in this block waits at most
    until ``deadline``, then fails with a timeout naming it: a gateway that drip-feeds its answer
    a byte at a time cannot keep an attempt alive past its deadline, headers included."""
    token = deadline_var.set((deadline, name))
    try:
        yield
    finally:
        deadline_var.reset(token)


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    bound = deadline_var.get()
    if bound is None:
        return timeout
    left = bound[0] - time.monotonic()
    if left <= 0:
        raise error(bound[1]())
    return left if timeout is None else min(timeout, left)


class _DeadlineNetworkStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineNetworkStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineNetworkStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, bounded, socket_options)
        return _DeadlineNetworkStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def inner_transport(config: GatewayConfig, http: ModuleType = httpx, *, asynchronous: bool) -> Any:
    """The network transport under every correlation transport built here: the config's proxy
    and pool limits, and the process's one TLS context."""
    transport_class = http.AsyncHTTPTransport if asynchronous else http.HTTPTransport
    return transport_class(
        proxy=proxy_for(config), limits=limits_for(config, http), verify=ssl_context(http)
    )


def http_transport(config: GatewayConfig) -> httpx.HTTPTransport:
    """httpx's sync transport, its blocking I/O bounded by :func:`deadline_bound`.

    httpx takes no network backend, so its connection pool's is wrapped (the pool reads it for
    each new connection); should a later httpx hide it, the transport works as before, bounded
    by the read timeout alone (the reliability suite's drip-fed checks would say so).
    """
    transport: httpx.HTTPTransport = inner_transport(config, asynchronous=False)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return transport


#: An attempt's timeout is nearly always the configured one: built once per value.
attempt_timeout = functools.lru_cache(maxsize=64)(timeout_for)


class _RejectAllCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing: no cookie of one call is ever sent on another."""
    return CookieJar(policy=_RejectAllCookies())


class _NoCookies(httpx.Cookies):
    """The cookies of a client that keeps none: an answer is not even read for them."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def keeping_no_cookies(client: Any) -> Any:
    """``client`` (built with :func:`no_cookie_jar`), its answers no longer read for cookies.

    httpx reads every answer for ``Set-Cookie`` through ``urllib``'s cookie machinery, whose
    copy of the request's headers costs about as much as the rest of a call's client side;
    with a jar that keeps nothing, that reading can only end in nothing. Other clients (such as
    httpx2's, which reads only answers that set a cookie) are returned as they are.
    """
    if isinstance(client, (httpx.Client, httpx.AsyncClient)) and isinstance(
        getattr(client, "_cookies", None), httpx.Cookies
    ):
        client._cookies = _NoCookies(client._cookies.jar)
    return client


_HeaderIndex = tuple[list[tuple[bytes, bytes, bytes]], str, dict[bytes, str], dict[str, None]]


class IndexedHeaders(httpx.Headers):
    """httpx's ``Headers`` whose look-ups by name read an index of the list, made again when the
    list or the encoding has changed since: the same list, the same answers, the same errors.

    httpx scans every header on each look-up, and after every answer its cookie read copies the
    request's headers with ``dict(headers)``, a look-up per name: each header added to a request
    costs a scan of all the others. The correlation transport gives the requests it adds headers
    to this class (see :func:`indexed`), so that copy costs a check of the list per name.
    """

    _aigw_index: _HeaderIndex | None = None

    def __reduce__(self) -> tuple[type[httpx.Headers], tuple[list[tuple[bytes, bytes]], str]]:
        # Pickled and copied as httpx's own Headers (a sent request pickles, as httpx allows).
        return httpx.Headers, (self.raw, self.encoding)

    def _index(self) -> _HeaderIndex | None:
        entries = self._list
        encoding = self._encoding or self.encoding
        index = self._aigw_index
        if index is not None and index[1] == encoding and index[0] == entries:
            return index
        values: dict[bytes, str] = {}
        names: dict[str, None] = {}
        try:
            for _, key, value in entries:
                text = value.decode(encoding)
                names[key.decode(encoding)] = None
                values[key] = f"{values[key]}, {text}" if key in values else text
        except Exception:  # what httpx makes of such a list is its own business
            return None
        index = self._aigw_index = (list(entries), encoding, values, names)
        return index

    def __getitem__(self, key: str) -> str:
        index = self._aigw_index  # checked here as in _index: one call less per look-up
        if index is None or index[1] != (self._encoding or self.encoding) or index[0] != self._list:
            index = self._index()
            if index is None:
                return super().__getitem__(key)
        value = index[2].get(key.lower().encode(index[1]))
        if value is None:
            raise KeyError(key)
        return value

    def keys(self) -> KeysView[str]:
        index = self._index()
        return super().keys() if index is None else dict(index[3]).keys()


IndexedHeaders.__name__ = IndexedHeaders.__qualname__ = "Headers"  # as httpx's repr shows it


def indexed(headers: httpx.Headers) -> None:
    """Make ``headers``, if httpx's own ``Headers``, an :class:`IndexedHeaders` (same object)."""
    if type(headers) is httpx.Headers:
        headers.__class__ = IndexedHeaders


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
