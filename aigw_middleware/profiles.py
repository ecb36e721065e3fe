"""Gateway header profiles: how each gateway is told who called and why.

Every profile sends the generic headers: ``X-AI-Request-Id`` always, ``X-AI-Tenant``,
``X-AI-Team``, ``X-AI-User`` and ``X-AI-Session`` when bound (names configurable). A gateway
profile adds that gateway's own names, so its logs, analytics, budgets and rate limits see the
same values. Each profile is data: which native header carries which bound field, which headers
get a fresh UUID on every attempt, which JSON body fields it fills, its options; plus at most one
small function for what data cannot say (a JSON metadata header, a header that depends on
another field). Adding a gateway is one entry in :data:`_PROFILES` and its tests.

The README's gateway table says where each mapping comes from and which gateway versions it was
checked against.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from .context import CorrelationContext

__all__: list[str] = []

#: A field of :class:`~aigw_middleware.context.CorrelationContext`.
_Field = Literal["request_id", "tenant", "team", "user", "session"]
_Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _CorrelationNames:
    """The configured names of the generic headers."""

    request_id: str = "X-AI-Request-Id"
    tenant: str = "X-AI-Tenant"
    team: str = "X-AI-Team"
    user: str = "X-AI-User"
    session: str = "X-AI-Session"

    def pairs(self) -> tuple[tuple[str, _Field], ...]:
        """Each generic header name with the field it carries, request ID first."""
        return (
            (self.request_id, "request_id"),
            (self.tenant, "tenant"),
            (self.team, "team"),
            (self.user, "user"),
            (self.session, "session"),
        )


def _bound(context: CorrelationContext) -> dict[_Field, str]:
    """The fields of ``context`` that have a value, in the order of :class:`_CorrelationNames`."""
    values: dict[_Field, str | None] = {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "user": context.user,
        "session": context.session,
    }
    return {name: value for name, value in values.items() if value is not None}


#: ``(bound fields, generic names, options) -> headers``: the one function a profile may have.
_Extra = Callable[[Mapping[_Field, str], _CorrelationNames, Mapping[str, str]], _Headers]

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE_RE = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?")


@dataclass(frozen=True, slots=True)
class _HeaderProfile:
    """A gateway's native attribution headers (and body fields), as data.

    ``fields`` maps a native header to the bound field it carries; a name in braces, such as
    ``{tenant_header}``, is taken from ``options``. ``fresh`` headers get a new UUID4 on every
    attempt and redirect hop. ``extra`` builds what data cannot say and declares its header
    names in ``extra_names``. ``body`` maps JSON body fields to bound fields; they are filled
    only where the caller's body has no such field. ``options`` holds the settings a user may
    change and their defaults; option names ending in ``_header`` are header names.
    """

    name: str
    fields: tuple[tuple[str, _Field], ...] = ()
    fresh: tuple[str, ...] = ()
    extra: _Extra | None = None
    extra_names: tuple[str, ...] = ()
    body: tuple[tuple[str, _Field], ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)

    def configured(self, options: Mapping[str, str] | None = None) -> _HeaderProfile:
        """This profile with ``options`` applied over its current ones.

        Raises ``ValueError`` naming the option for an unknown option or an invalid value.
        """
        merged = dict(self.options)
        for key, value in (options or {}).items():
            if key not in self.options:
                known = ", ".join(sorted(self.options)) or "none"
                raise ValueError(
                    f"header profile {self.name!r} has no option {key!r} (its options: {known})"
                )
            merged[key] = _option_value(self.name, key, self.options[key], value)
        return replace(self, options=merged)

    def _fields(self) -> tuple[tuple[str, _Field], ...]:
        return tuple((header.format_map(self.options), source) for header, source in self.fields)

    @property
    def native_names(self) -> tuple[str, ...]:
        """Every header this profile may add besides the generic ones.

        The transport strips them from hops that leave the gateway.
        """
        return (*(header for header, _ in self._fields()), *self.fresh, *self.extra_names)

    def headers(self, context: CorrelationContext, names: _CorrelationNames) -> _Headers:
        """All correlation headers for one outgoing HTTP request (one attempt or redirect hop)."""
        bound = _bound(context)
        out = [(name, bound[source]) for name, source in names.pairs() if source in bound]
        out.extend((name, bound[source]) for name, source in self._fields() if source in bound)
        out.extend((name, str(uuid.uuid4())) for name in self.fresh)
        if self.extra is not None:
            out.extend(self.extra(bound, names, self.options))
        return out

    def body_fields(self, body: Mapping[str, Any], context: CorrelationContext) -> dict[str, Any]:
        """``body`` with this profile's body fields added from ``context``.

        A field the caller's body already has is left as it is, whatever its value.
        """
        bound = _bound(context)
        added = {
            key: bound[source] for key, source in self.body if source in bound and key not in body
        }
        return {**body, **added} if added else dict(body)


def _option_value(profile: str, key: str, default: str, value: object) -> str:
    if key.endswith("_header"):
        ok, kind = _TOKEN_RE.fullmatch(str(value)) is not None, "a header name"
    elif default in ("true", "false"):
        ok, kind = value in ("true", "false"), '"true" or "false"'
    else:
        ok = value == "" or _VALUE_RE.fullmatch(str(value)) is not None
        kind = "empty or up to 128 visible characters"
    if not ok or not isinstance(value, str):
        raise ValueError(f"header profile {profile!r} option {key!r} must be {kind}, not {value!r}")
    return value


_Key = TypeVar("_Key", bound=str)


def _json(values: Mapping[_Key, str]) -> str:
    return json.dumps(dict(values), separators=(",", ":"))


def _helicone(
    bound: Mapping[_Field, str], names: _CorrelationNames, options: Mapping[str, str]
) -> _Headers:
    # A path and a name only mean something inside a session; empty options are not sent.
    if "session" not in bound:
        return []
    wanted = (
        ("Helicone-Session-Path", options["session_path"]),
        ("Helicone-Session-Name", options["session_name"]),
    )
    return [(name, value) for name, value in wanted if value]


#: Portkey's special metadata key for the end user; its other keys are free-form.
_PORTKEY_KEYS: dict[_Field, str] = {
    "request_id": "request_id",
    "tenant": "tenant",
    "team": "team",
    "user": "_user",
    "session": "session",
}


def _portkey(
    bound: Mapping[_Field, str], names: _CorrelationNames, options: Mapping[str, str]
) -> _Headers:
    # Portkey forwards upstream only the headers named here; absent ones are skipped, so all
    # generic names are listed and a value set explicitly on one call is forwarded too.
    forward = ",".join(name.lower() for name, _ in names.pairs())
    metadata = {_PORTKEY_KEYS[key]: value for key, value in bound.items()}
    return [("x-portkey-metadata", _json(metadata)), ("x-portkey-forward-headers", forward)]


def _litellm(
    bound: Mapping[_Field, str], names: _CorrelationNames, options: Mapping[str, str]
) -> _Headers:
    out = []
    # LiteLLM takes x-litellm-trace-id as its session too, and prefers it over
    # x-litellm-session-id; with a bound session only the session header is sent.
    if "session" not in bound:
        out.append(("x-litellm-trace-id", bound["request_id"]))
    out.append(("x-litellm-spend-logs-metadata", _json(bound)))
    if options["send_tags"] == "true":
        tags = [f"{key}:{bound[key]}" for key in ("tenant", "team") if key in bound]
        if tags:
            out.append(("x-litellm-tags", ",".join(tags)))
    return out


#: Cloudflare keeps the first five metadata entries; the context has exactly five fields, so
#: all fit. The order says which win should a sixth ever be added.
_CLOUDFLARE_ORDER: tuple[_Field, ...] = ("request_id", "tenant", "team", "user", "session")
_CLOUDFLARE_MAX_ENTRIES = 5


def _cloudflare(
    bound: Mapping[_Field, str], names: _CorrelationNames, options: Mapping[str, str]
) -> _Headers:
    kept = [key for key in _CLOUDFLARE_ORDER if key in bound][:_CLOUDFLARE_MAX_ENTRIES]
    return [("cf-aig-metadata", _json({key: bound[key] for key in kept}))]


_PROFILES: dict[str, _HeaderProfile] = {
    "generic": _HeaderProfile("generic"),
    "helicone": _HeaderProfile(
        "helicone",
        fields=(
            ("Helicone-Property-Request-Id", "request_id"),
            ("Helicone-Property-Tenant", "tenant"),
            ("Helicone-Property-Team", "team"),
            ("Helicone-User-Id", "user"),
            ("Helicone-Session-Id", "session"),
        ),
        extra=_helicone,
        extra_names=("Helicone-Session-Path", "Helicone-Session-Name"),
        options={"session_path": "", "session_name": ""},
    ),
    "portkey": _HeaderProfile(
        "portkey",
        fields=(("x-portkey-trace-id", "request_id"),),
        extra=_portkey,
        extra_names=("x-portkey-metadata", "x-portkey-forward-headers"),
    ),
    "litellm": _HeaderProfile(
        "litellm",
        fields=(("x-litellm-session-id", "session"), ("x-litellm-end-user-id", "user")),
        fresh=("x-litellm-call-id",),
        extra=_litellm,
        extra_names=("x-litellm-trace-id", "x-litellm-spend-logs-metadata", "x-litellm-tags"),
        options={"send_tags": "false"},
    ),
    "cloudflare": _HeaderProfile("cloudflare", extra=_cloudflare, extra_names=("cf-aig-metadata",)),
    "bifrost": _HeaderProfile(
        "bifrost",
        fields=(("x-bf-user-id", "user"),),
        # Bifrost keys its log entry on x-request-id: a repeated value would merge attempts.
        fresh=("x-request-id",),
    ),
    "envoy": _HeaderProfile(
        "envoy",
        fields=(("{tenant_header}", "tenant"), ("{session_header}", "session")),
        options={"tenant_header": "x-tenant-id", "session_header": "agent-session-id"},
    ),
    "openrouter": _HeaderProfile(
        "openrouter",
        fields=(("x-session-id", "session"),),
        body=(("user", "user"), ("session_id", "session")),
    ),
}


def _get_profile(name: str, options: Mapping[str, str] | None = None) -> _HeaderProfile:
    """The profile called ``name`` with ``options`` applied.

    ``KeyError`` when there is no such profile; ``ValueError`` for a bad option.
    """
    return _PROFILES[name].configured(options)
