"""Correlation transports for httpx: on every request sent, strip, then add, per hop.

``CorrelationTransport(inner, config)`` wraps any ``httpx.BaseTransport`` (and
``AsyncCorrelationTransport`` any ``httpx.AsyncBaseTransport``). For each HTTP request that goes
out through it, redirect hops and retries included, it removes every correlation header and adds
them back only when scheme, host, port and path prefix match ``base_url`` or ``propagate_to``.
Headers the caller set explicitly on a call to the gateway win, after validation. A hop to any
other URL also loses ``Authorization`` and the configured ``extra_headers``: the gateway's
credentials go to the gateway only.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from . import _otel
from ._httpx import IndexedHeaders, indexed
from ._rules import _is_valid_label, _is_valid_request_id, _is_valid_user, _new_request_id
from .config import ApiKeyResolver, GatewayConfig
from .context import CorrelationContext, _safe_context, current_context
from .errors import ConfigurationError
from .log import _escape_for_log, _log_attempt, _logger
from .profiles import _CorrelationNames, _Field, _get_profile, _HeaderProfile

__all__ = ["AsyncCorrelationTransport", "CorrelationTransport"]

#: Request extension holding the CorrelationContext of one logical call (shared by its retries).
_CONTEXT_EXTENSION = "aigw.context"
#: Request extension holding the attempt number of one logical call (1 for the first).
_ATTEMPT_EXTENSION = "aigw.attempt"
#: Request extension holding the key an SDK wrapper already resolved for this attempt.
_API_KEY_EXTENSION = "aigw.api_key"
_INJECTED_EXTENSION = "aigw.injected"

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: URLs (scheme, host, port, path) whose match is remembered per client; then it starts over.
_MAX_REMEMBERED_URLS = 256
_NOTHING_INJECTED: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parsed = httpx.URL(url)
        return cls(
            parsed.scheme,
            parsed.host.lower(),
            parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0),
            parsed.path.rstrip("/"),
        )

    def matches(self, url: httpx.URL) -> bool:
        if url.scheme != self.scheme or url.host.lower() != self.host:
            return False
        if (url.port or _DEFAULT_PORTS.get(url.scheme, 0)) != self.port:
            return False
        path = url.path
        return not self.path or path == self.path or path.startswith(self.path + "/")


class _Targets:
    """The URLs that may receive correlation headers and credentials: ``base_url`` and the
    ``propagate_to`` prefixes (same scheme, host and port, and a path under theirs)."""

    def __init__(self, base_url: str | None, propagate_to: tuple[str, ...] = ()) -> None:
        urls = ([base_url] if base_url else []) + list(propagate_to)
        self._targets = tuple(_Target.parse(url) for url in urls)
        # A client calls a few URLs over and over: each is matched once.
        self._seen: dict[tuple[Any, ...], bool] = {}

    def match(self, url: httpx.URL) -> bool:
        """True when ``url`` is under one of the targets."""
        try:  # httpx's parsed URL, without the decoding of its public properties
            ref = url._uri_reference
            key = (ref.scheme, ref.host, ref.port, ref.path)
        except AttributeError:
            key = (url.scheme, url.host, url.port, url.path)
        found = self._seen.get(key)
        if found is None:
            found = any(target.matches(url) for target in self._targets)
            if len(self._seen) >= _MAX_REMEMBERED_URLS:
                self._seen.clear()
            self._seen[key] = found
        return found


class _HeaderInjector:
    """The per-hop header rule, shared by the sync and async transports.

    Header names are compared lower-cased and as bytes, as httpx keeps them.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.names = _CorrelationNames(
            config.request_id_header,
            config.tenant_header,
            config.team_header,
            config.user_header,
            config.session_header,
        )
        self.profile = _get_profile(config.header_profile, config.profile_options)
        self._generic = {_key(name): source for name, source in self.names.pairs()}
        self._managed = frozenset((*self._generic, *map(_key, self.profile.native_names)))
        # What a hop to anywhere but a target loses: correlation and the gateway's credentials.
        self._gateway_only = self._managed.union(
            {b"authorization"}, (_key(name) for name in config.extra_headers)
        )
        self._targets = _Targets(config.base_url, tuple(config.propagate_to))
        # Headers of the last context seen, unless the profile has a fresh value per request.
        self._per_request = bool(self.profile.fresh)
        self._last: tuple[CorrelationContext, _Entries, frozenset[bytes]] | None = None

    def is_target(self, url: httpx.URL) -> bool:
        """True when ``url`` is under ``base_url`` or one of ``propagate_to``."""
        return self._targets.match(url)

    def prepare(self, request: httpx.Request) -> tuple[CorrelationContext, object | None]:
        """Rewrite ``request``'s correlation and trace headers for this hop; return the context
        used and the token to pass to ``_otel.end_hop`` once the hop is done.

        Strip, then add: the headers this transport added on an earlier hop go first; a target
        then gets the profile's headers, except those the caller set on the call (which win
        when valid), and any other URL loses every gateway-only header."""
        context = _context_of(request)
        target = self._targets.match(request.url)
        headers = request.headers
        entries = _entries_of(headers)
        present = (
            {key for _, key, _ in entries}
            if entries is not None
            else {key.lower() for key, _ in headers.raw}
        )
        extensions = request.extensions
        injected: frozenset[bytes] = extensions.get(_INJECTED_EXTENSION, _NOTHING_INJECTED)
        if not target:
            _remove(headers, present.intersection(self._gateway_only | injected))
            extensions[_INJECTED_EXTENSION] = _NOTHING_INJECTED
            return context, _otel.prepare_hop(request, self.config, context, target)
        if injected and not present.isdisjoint(injected):
            _remove(headers, present.intersection(injected))
            present.difference_update(injected)
        if not present.isdisjoint(self._generic):
            for key in present.intersection(self._generic):
                if not self._explicit_ok(key, headers[key.decode("latin-1")]):
                    _remove(headers, {key})
                    present.discard(key)
        added, keys = self._headers_of(context)
        if not present.isdisjoint(keys):  # some set explicitly on this call: they win
            added = tuple(entry for entry in added if entry[1] not in present)
            keys = keys.difference(present)
        _append(headers, entries, added)
        indexed(headers)
        if self.config.api_key_resolver is not None:
            if _API_KEY_EXTENSION in extensions:
                api_key = extensions[_API_KEY_EXTENSION]
            else:
                api_key = _resolve_api_key(self.config.api_key_resolver, context)
            if api_key is not None:
                headers["Authorization"] = f"Bearer {api_key}"
                keys = keys.union((b"authorization",))
        extensions[_INJECTED_EXTENSION] = keys
        # Last, as it may attach an OpenTelemetry context that only end_hop detaches.
        return context, _otel.prepare_hop(request, self.config, context, target)

    def _headers_of(self, context: CorrelationContext) -> tuple[_Entries, frozenset[bytes]]:
        """The profile's headers for ``context`` as httpx keeps them, and their lower-cased
        names. A context is immutable, so the calls of one request reuse what was built."""
        last = self._last
        if last is not None and last[0] is context:
            return last[1], last[2]
        built = tuple(
            (name.encode("latin-1"), _key(name), value.encode("latin-1"))
            for name, value in self.profile.headers(context, self.names)
        )
        keys = frozenset(key for _, key, _ in built)
        if not self._per_request:
            self._last = (context, built, keys)
        return built, keys

    def _explicit_ok(self, key: bytes, value: str) -> bool:
        ok = _VALID[self._generic[key]](value)
        if not ok:
            _logger.warning(
                "aigw: dropped invalid explicit %s header %s",
                key.decode("latin-1"),
                _escape_for_log(value),
            )
        return ok


#: Headers as httpx keeps them: (name, lower-cased name, value), in bytes.
_Entries = tuple[tuple[bytes, bytes, bytes], ...]
#: The modules of the header classes known to keep a list of such entries in ``_list``.
_LISTED_HEADERS = frozenset({"httpx", "httpx._models", "httpx2", "httpx2._models"})
_listed: dict[type, bool] = {IndexedHeaders: True}


def _key(name: str) -> bytes:
    return name.lower().encode("latin-1")


def _entries_of(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]] | None:
    """The list under ``headers`` (httpx's and httpx2's ``Headers``), else None.

    Each ``headers[name] = value`` of httpx re-encodes the name and scans every header; a
    request gets its few correlation headers appended to the list instead, as ASCII (every
    value is validated to be).
    """
    cls = type(headers)
    listed = _listed.get(cls)
    if listed is None:
        entries = getattr(headers, "_list", None)
        listed = _listed[cls] = (
            cls.__module__ in _LISTED_HEADERS
            and cls.__qualname__ == "Headers"
            and isinstance(entries, list)
        )
    return headers._list if listed else None


def _append(
    headers: httpx.Headers, entries: list[tuple[bytes, bytes, bytes]] | None, added: _Entries
) -> None:
    """Add headers that ``headers`` does not have (see :func:`_entries_of`)."""
    if entries is not None:
        entries.extend(added)
        return
    for name, _, value in added:
        headers[name.decode("latin-1")] = value.decode("latin-1")


def _remove(headers: httpx.Headers, keys: set[bytes]) -> None:
    for key in keys:
        del headers[key.decode("latin-1")]


_VALID: dict[_Field, Callable[[object], bool]] = {
    "request_id": _is_valid_request_id,
    "tenant": _is_valid_label,
    "team": _is_valid_label,
    "user": _is_valid_user,
    "session": _is_valid_request_id,
}


def _profile_of(config: GatewayConfig) -> _HeaderProfile:
    """The configured header profile of ``config``, built once per name and options."""
    return _configured_profile(config.header_profile, tuple(config.profile_options.items()))


@functools.lru_cache(maxsize=64)
def _configured_profile(name: str, options: tuple[tuple[str, str], ...]) -> _HeaderProfile:
    return _get_profile(name, dict(options))


def _resolve_api_key(resolver: ApiKeyResolver, context: CorrelationContext) -> str | None:
    """The key ``resolver`` picks for the call made with ``context``, or None for ``api_key``.

    A resolver that raises or returns something else than a single-line string fails the call
    with a :class:`ConfigurationError` naming the resolver; the error never shows a key.
    """
    name = _name_of(resolver)
    try:
        key = resolver(context)
    except Exception as exc:
        raise ConfigurationError(
            "api_key_resolver", name, f"{name} raised {type(exc).__name__}"
        ) from None
    if key is None:
        return None
    if not isinstance(key, str) or not key or any(c in key for c in "\r\n\0"):
        raise ConfigurationError(
            "api_key_resolver",
            name,
            f"{name} returned {type(key).__name__}; it must return a single-line string or None",
        )
    return key


def _name_of(resolver: Callable[..., Any]) -> str:
    module = getattr(resolver, "__module__", None)
    qualname = getattr(resolver, "__qualname__", None) or type(resolver).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _context_of(request: httpx.Request) -> CorrelationContext:
    found: Any = request.extensions.get(_CONTEXT_EXTENSION)
    context = found if isinstance(found, CorrelationContext) else current_context()
    context = _checked_context(context or CorrelationContext(_new_request_id()))
    if context is not found:
        request.extensions[_CONTEXT_EXTENSION] = context
    return context


#: The last context found valid. A context is immutable, so the calls and hops made under one
#: bound context check its values once.
_valid: CorrelationContext | None = None


def _checked_context(context: CorrelationContext) -> CorrelationContext:
    """``context`` if its values are valid, else a safe copy (see ``_safe_context``)."""
    global _valid
    if context is _valid:
        return context
    safe = _safe_context(context)
    if safe is context:
        _valid = context
    return safe


def _target_of(url: httpx.URL) -> str:
    """Where a call went, as logs and errors show it: host, port and path; no credentials, no
    query."""
    return f"{url.host}{f':{url.port}' if url.port else ''}{url.path}"


@functools.lru_cache(maxsize=64)
def _targets_of(base_url: str | None, propagate_to: tuple[str, ...]) -> _Targets:
    return _Targets(base_url, propagate_to)


def _targets_for(config: GatewayConfig) -> _Targets:
    """The destinations that get correlation headers under ``config`` (cached per config)."""
    return _targets_of(config.base_url, tuple(config.propagate_to))


def _log(
    request: httpx.Request,
    context: CorrelationContext,
    started: float,
    status: int | None,
    outcome: str,
) -> None:
    level = logging.INFO if status is not None and status < 400 else logging.WARNING
    if not _logger.isEnabledFor(level):
        return
    attempt = request.extensions.get(_ATTEMPT_EXTENSION, 1)
    _log_attempt(
        method=request.method,
        target=_target_of(request.url),
        status=status,
        attempt=attempt if isinstance(attempt, int) else 1,
        duration=time.perf_counter() - started,
        context=context,
        outcome=outcome,
        level=level,
    )


class CorrelationTransport(httpx.BaseTransport):
    """Wraps a sync httpx transport and applies the correlation header rule to every request."""

    def __init__(self, inner: httpx.BaseTransport, config: GatewayConfig) -> None:
        self.inner = inner
        """The wrapped transport, which sends the requests."""
        self.injector = _HeaderInjector(config)
        """Decides, per hop, which correlation headers a request gets."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Set the correlation headers for this hop, then send through :attr:`inner`."""
        context, token = self.injector.prepare(request)
        started = time.perf_counter()
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            _log(request, context, started, None, type(exc).__name__)
            raise
        finally:
            if token is not None:
                _otel.end_hop(token)
        _log(request, context, started, response.status_code, "response")
        return response

    def close(self) -> None:
        """Close :attr:`inner`."""
        self.inner.close()


class AsyncCorrelationTransport(httpx.AsyncBaseTransport):
    """Wraps an async httpx transport and applies the correlation header rule to every request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, config: GatewayConfig) -> None:
        self.inner = inner
        """The wrapped transport, which sends the requests."""
        self.injector = _HeaderInjector(config)
        """Decides, per hop, which correlation headers a request gets."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Set the correlation headers for this hop, then send through :attr:`inner`."""
        context, token = self.injector.prepare(request)
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            _log(request, context, started, None, type(exc).__name__)
            raise
        finally:
            if token is not None:
                _otel.end_hop(token)
        _log(request, context, started, response.status_code, "response")
        return response

    async def aclose(self) -> None:
        """Close :attr:`inner`."""
        await self.inner.aclose()
