"""Framework-neutral rules for incoming requests: which request ID and session, whose tenant.

Every adapter (Django, Flask, ASGI, Celery) translates its request into a header lookup and a
peer address and calls :meth:`InboundPolicy.context_from`. Nothing here imports a web framework.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _otel
from ._resolver import _PLAIN_RESULTS, _checked, _merge, _resolved
from ._rules import _REQUEST_ID_MAX, _REQUEST_ID_RE, _is_valid_request_id, _new_request_id
from .config import GatewayConfig, TenantResolver
from .context import CorrelationContext, _unchecked_context
from .log import _escape_for_log

__all__ = ["HeaderGetter", "HeaderLookup", "InboundPolicy"]

_logger = logging.getLogger("aigw_middleware")

HeaderGetter = Callable[[str], "str | None"]
"""Returns the value of a request header (repeated headers joined with ", "), or None."""


class HeaderLookup(Protocol):
    """The request's headers as :meth:`InboundPolicy.context_from` reads them: ``get(key)`` is
    a :data:`HeaderGetter` (a dict, a WSGI environ and Django's ``META`` are lookups)."""

    def get(self, key: str, /) -> str | None:
        """The value of the header under ``key``, or None."""


class _Getter:
    """A :data:`HeaderGetter` as a :class:`HeaderLookup`."""

    __slots__ = ("get",)

    def __init__(self, get: HeaderGetter) -> None:
        self.get = get


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_request_id_match = _REQUEST_ID_RE.fullmatch
_HYPHEN = ord("-")


@dataclass(frozen=True, slots=True)
class _HeaderKeys:
    """The keys under which a header getter finds the headers a policy reads: configured names
    (getters that ignore case), lower-case names (ASGI) or WSGI environ keys (Django's META), so
    that no adapter builds a headers object for the whole request."""

    request_id: tuple[str, ...]
    session: str
    tenant: str
    team: str
    user: str

    def mapped(self, key_of: Callable[[str], str]) -> _HeaderKeys:
        return _HeaderKeys(
            tuple(key_of(name) for name in self.request_id),
            key_of(self.session),
            key_of(self.tenant),
            key_of(self.team),
            key_of(self.user),
        )

    def all(self) -> tuple[str, ...]:
        return (*self.request_id, self.session, self.tenant, self.team, self.user)


def _environ_key(name: str) -> str:
    """The WSGI environ key of header ``name`` (PEP 3333; Django's ``HttpHeaders.to_wsgi_name``)."""
    key = name.replace("-", "_").upper()
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """The request-ID, session and tenant trust rules, built once from a :class:`GatewayConfig`.

    Tenant, team and user are trusted alike: from the resolver, or by header only from a
    trusted peer. The session follows the request-ID rules: taken from its incoming header when
    valid, never generated.
    """

    request_id_headers: tuple[str, ...]
    """Where an incoming request ID may come from, in order; the first valid one wins."""
    tenant_header: str
    """The header a trusted peer may set the tenant with."""
    team_header: str
    """The header a trusted peer may set the team with."""
    trusted_networks: tuple[_Network, ...]
    """The networks whose direct peers may set tenant, team and user by header."""
    resolver: TenantResolver | None
    """The tenant resolver, whose values win over headers; None for none."""
    user_header: str = "X-AI-User"
    """The header a trusted peer may set the user with."""
    session_header: str = "X-AI-Session"
    """The header the session comes from, from any peer, when valid."""
    request_id_source: str = "header"
    """``"header"``, or ``"trace"``: without a valid incoming ID, the active trace's ID."""
    resolver_is_async: bool = field(init=False, default=False)
    """True when the resolver is a coroutine function (``async def``, or an object whose
    ``__call__`` is one): async adapters await it on the running event loop."""
    header_keys: _HeaderKeys = field(init=False, repr=False, compare=False)
    """The configured header names, for getters that ignore case."""
    lowercase_keys: _HeaderKeys = field(init=False, repr=False, compare=False)
    """The same headers by lower-case name, for getters over ASGI headers."""
    environ_keys: _HeaderKeys = field(init=False, repr=False, compare=False)
    """The same headers by WSGI environ key, for getters over a WSGI environ or Django's META."""
    # The request-ID headers by key, for the warning that names an invalid one.
    _names: dict[str, str] = field(init=False, repr=False, compare=False)
    # OpenTelemetry's current-context getter; None when it is not installed (never a trace).
    _otel_context: Callable[[], object] | None = field(init=False, repr=False, compare=False)
    # No resolver and no trusted peer: only the request-ID and session headers decide.
    _headers_only: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = _HeaderKeys(
            self.request_id_headers,
            self.session_header,
            self.tenant_header,
            self.team_header,
            self.user_header,
        )
        lowercase, environ = keys.mapped(str.lower), keys.mapped(_environ_key)
        names: dict[str, str] = {}
        for each in (environ, lowercase, keys):  # the configured spelling wins a clash
            names.update(zip(each.all(), keys.all(), strict=True))
        for name, value in (
            ("resolver_is_async", _is_async_callable(self.resolver)),
            ("header_keys", keys),
            ("lowercase_keys", lowercase),
            ("environ_keys", environ),
            ("_names", names),
            ("_otel_context", _otel.context_getter()),
            ("_headers_only", self.resolver is None and not self.trusted_networks),
        ):
            object.__setattr__(self, name, value)

    def wanted(self, keys: _HeaderKeys) -> tuple[str, ...]:
        """The keys of ``keys`` this policy may read: tenant, team and user only when some peer
        is trusted."""
        if self.trusted_networks:
            return keys.all()
        return (*keys.request_id, keys.session)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> InboundPolicy:
        """The policy that ``config`` describes."""
        return cls(
            request_id_headers=config.incoming_request_id_headers,
            tenant_header=config.tenant_header,
            team_header=config.team_header,
            trusted_networks=tuple(
                ipaddress.ip_network(cidr) for cidr in config.trust_tenant_headers_from
            ),
            resolver=config.tenant_resolver,
            user_header=config.user_header,
            session_header=config.session_header,
            request_id_source=config.request_id_source,
        )

    def request_id(
        self,
        get_header: HeaderGetter,
        trace_id: str | None = None,
        keys: _HeaderKeys | None = None,
    ) -> str:
        """The first valid incoming request ID, else ``trace_id`` when the source is ``trace``,
        else a fresh one; invalid values are logged.

        ``keys`` says how ``get_header`` names headers (default: as configured).
        """
        for key in (keys or self.header_keys).request_id:
            value = get_header(key)
            if value is None:
                continue
            if _is_valid_request_id(value):
                return value
            _logger.warning(
                "aigw: ignored invalid incoming %s header %s; generated a new request ID",
                self._names[key],
                _escape_for_log(value),
            )
        return self._fallback_id(trace_id)

    def _fallback_id(self, trace_id: str | None) -> str:
        """Without a valid incoming ID: the trace's with the ``trace`` source, else a fresh one."""
        if trace_id is not None and self.request_id_source == "trace":
            return trace_id
        return _new_request_id()

    def trusts(self, peer: str | None) -> bool:
        """True when the direct peer address may set tenant and team by header."""
        if not self.trusted_networks or not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_networks)

    def session(self, get_header: HeaderGetter, keys: _HeaderKeys | None = None) -> str | None:
        """The incoming session when valid (request-ID rules); an invalid one is logged."""
        value = get_header((keys or self.header_keys).session)
        if value is None or _is_valid_request_id(value):
            return value
        _logger.warning(
            "aigw: ignored invalid incoming %s header %s",
            self.session_header,
            _escape_for_log(value),
        )
        return None

    def attribution(
        self,
        get_header: HeaderGetter,
        peer: str | None,
        request: Any = None,
        keys: _HeaderKeys | None = None,
    ) -> dict[str, str | None]:
        """Tenant, team, user and session for one request; the resolver's values win.

        Tenant, team and user come by header only from a trusted peer; the session comes from
        its header whoever sent it. An async resolver cannot run here: async adapters use
        :meth:`aattribution`.
        """
        values = self._from_headers(get_header, peer, keys or self.header_keys)
        if self.resolver is not None and request is not None:
            _merge(values, self._resolve(request))
        return values

    async def aattribution(
        self,
        get_header: HeaderGetter,
        peer: str | None,
        request: Any = None,
        keys: _HeaderKeys | None = None,
    ) -> dict[str, str | None]:
        """:meth:`attribution` for async adapters: an async resolver is awaited on the running
        event loop (a sync one is called in line)."""
        values = self._from_headers(get_header, peer, keys or self.header_keys)
        if self.resolver is not None and request is not None:
            _merge(values, await self._aresolve(request))
        return values

    def _from_headers(
        self, get_header: HeaderGetter, peer: str | None, keys: _HeaderKeys
    ) -> dict[str, str | None]:
        values: dict[str, str | None] = {
            "tenant": None,
            "team": None,
            "user": None,
            "session": self.session(get_header, keys),
        }
        if self.trusts(peer):
            for field_name, name, key in (
                ("tenant", self.tenant_header, keys.tenant),
                ("team", self.team_header, keys.team),
                ("user", self.user_header, keys.user),
            ):
                values[field_name] = _checked(field_name, name, get_header(key))
        return values

    def tenant_and_team(
        self, get_header: HeaderGetter, peer: str | None, request: Any = None
    ) -> tuple[str | None, str | None]:
        """Tenant and team of :meth:`attribution`."""
        values = self.attribution(get_header, peer, request)
        return values["tenant"], values["team"]

    def _resolve(self, request: Any) -> dict[str, str | None]:
        assert self.resolver is not None
        try:
            result = self.resolver(request)
        except Exception:
            _logger.exception("aigw: tenant resolver failed; continuing without its values")
            return {}
        if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: closed, so Python does not warn about it
            _logger.error(
                "aigw: the tenant resolver is async, and this adapter calls it from sync code; "
                "continuing without its values"
            )
            return {}
        return _resolved(result)

    async def _aresolve(self, request: Any) -> dict[str, str | None]:
        assert self.resolver is not None
        try:
            if self.resolver_is_async:
                result = await self.resolver(request)  # type: ignore[misc]
            else:
                result = self.resolver(request)
                if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                    result = await result
        except Exception:
            _logger.exception("aigw: tenant resolver failed; continuing without its values")
            return {}
        return _resolved(result)

    def context_for(
        self,
        get_header: HeaderGetter,
        peer: str | None,
        request: Any = None,
        keys: _HeaderKeys | None = None,
    ) -> CorrelationContext:
        """The whole context for one incoming request.

        ``keys`` says how ``get_header`` names headers: :attr:`header_keys` (the default),
        :attr:`lowercase_keys` or :attr:`environ_keys`.
        """
        return self.context_from(_Getter(get_header), peer, request, keys)

    def context_from(
        self,
        headers: HeaderLookup,
        peer: str | None,
        request: Any = None,
        keys: _HeaderKeys | None = None,
    ) -> CorrelationContext:
        """:meth:`context_for` with the headers as a lookup: anything whose ``get(key)`` returns
        a header's value or None, such as a WSGI environ, Django's ``META`` or a dict.

        The adapters call this one: a getter (a bound ``get``) would be an object more per
        request.
        """
        keys = keys or self.header_keys
        if self._headers_only:
            # The common case, per request on every adapter: only headers decide. (_trace_id's
            # check in line: an empty OpenTelemetry context holds no trace, so no call.)
            otel_context = self._otel_context
            trace_id = _otel.current_trace_id() if otel_context and otel_context() else None
            first = headers.get(keys.request_id[0])
            # A valid ID in the first header (the common case) is taken here, with
            # _is_valid_request_id's rule in line; anything else goes through request_id().
            if type(first) is str and len(first) <= _REQUEST_ID_MAX and _request_id_match(first):
                request_id = first
            else:
                request_id = self.request_id(headers.get, trace_id, keys)
            # Most requests have no session header: check one only when it is there.
            session = headers.get(keys.session)
            if session is not None:
                session = self.session(headers.get, keys)
            return _unchecked_context(request_id, None, None, None, session, trace_id)
        get_header = headers.get
        return self._context(get_header, keys, self.attribution(get_header, peer, request, keys))

    def _raw_context(
        self, request_id: bytes | None, session: bytes | None
    ) -> CorrelationContext | None:
        """:meth:`context_for` of a headers-only policy, from the raw (latin-1) values of the
        first request-ID header and the session header when no other request-ID header came.

        Takes a value of the commonest valid shape (letters and digits, hyphens inside: UUIDs,
        hex), checked without the regular expression; None when the full rules must decide.
        """
        otel_context = self._otel_context
        # An empty OpenTelemetry context (always, without an SDK) holds no trace: no call.
        trace_id = _otel.current_trace_id() if otel_context and otel_context() else None
        if request_id is None:
            text = self._fallback_id(trace_id)
        elif (
            len(request_id) <= _REQUEST_ID_MAX
            and request_id.replace(b"-", b"").isalnum()  # ASCII only, for bytes
            and request_id[0] != _HYPHEN
        ):
            text = request_id.decode("latin-1")
        else:
            return None
        if session is None:
            return _unchecked_context(text, None, None, None, None, trace_id)
        if len(session) <= _REQUEST_ID_MAX and _request_id_match(
            value := session.decode("latin-1")
        ):
            return _unchecked_context(text, None, None, None, value, trace_id)
        return None

    def _trace_id(self) -> str | None:
        otel_context = self._otel_context
        # An empty OpenTelemetry context (always, without an SDK) holds no trace: no call.
        if otel_context is None or not otel_context():
            return None
        return _otel.current_trace_id()

    async def acontext_for(
        self,
        get_header: HeaderGetter,
        peer: str | None,
        request: Any = None,
        keys: _HeaderKeys | None = None,
    ) -> CorrelationContext:
        """:meth:`context_for` for async adapters: an async resolver is awaited on the running
        event loop, with no thread hop."""
        keys = keys or self.header_keys
        # aattribution's steps in line: one coroutine fewer per request.
        values = self._from_headers(get_header, peer, keys)
        if self.resolver is not None and request is not None:
            _merge(values, await self._aresolve(request))
        return self._context(get_header, keys, values)

    def _context(
        self, get_header: HeaderGetter, keys: _HeaderKeys, values: dict[str, str | None]
    ) -> CorrelationContext:
        trace_id = self._trace_id()
        return _unchecked_context(
            self.request_id(get_header, trace_id, keys),
            values["tenant"],
            values["team"],
            values["user"],
            values["session"],
            trace_id,
        )


def _is_async_callable(fn: object) -> bool:
    """True for a coroutine function, a partial of one, or an object whose ``__call__`` is one."""
    if fn is None:
        return False
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
