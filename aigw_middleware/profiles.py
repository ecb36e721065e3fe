"""Gateway header profiles: the correlation headers each gateway understands natively.

Every profile sends the generic ``X-AI-Request-Id``, ``X-AI-Tenant`` and ``X-AI-Team`` (names
configurable); the gateway-specific profiles add that gateway's own headers so its logs,
analytics and budgets see the same values:

- ``helicone``: ``Helicone-Property-Request-Id`` / ``-Tenant`` / ``-Team``, custom properties
  that Helicone records with each request. ``Helicone-Request-Id`` is not sent: Helicone
  replaces any value that is not a UUID. ``Helicone-User-Id`` is not sent either: a tenant is
  not a user, and Helicone's per-user analytics and rate limits would count it as one.
- ``portkey``: ``x-portkey-trace-id`` (the request ID), ``x-portkey-metadata`` (a JSON object of
  strings, each at most 128 characters) and ``x-portkey-forward-headers``, the comma-separated
  names of the three generic headers, without which Portkey forwards none of them upstream.
- ``litellm``: ``x-litellm-trace-id`` (the request ID), ``x-litellm-spend-logs-metadata`` (JSON)
  and ``x-litellm-call-id``, fresh for every attempt because LiteLLM uses it as the primary key
  of its spend log: a repeated value would drop the retry's row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .context import CorrelationContext

__all__ = ["PROFILES", "CorrelationNames", "HeaderProfile", "get_profile"]


@dataclass(frozen=True, slots=True)
class CorrelationNames:
    """The configured names of the three generic headers."""

    request_id: str = "X-AI-Request-Id"
    tenant: str = "X-AI-Tenant"
    team: str = "X-AI-Team"


NativeBuilder = Callable[[CorrelationContext, CorrelationNames], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class HeaderProfile:
    """A named set of outbound headers.

    ``native_names`` lists every header the profile may add besides the generic three; the
    transport strips them from hops that leave the gateway.
    """

    name: str
    native_names: tuple[str, ...]
    native: NativeBuilder

    def headers(
        self, context: CorrelationContext, names: CorrelationNames
    ) -> list[tuple[str, str]]:
        """All correlation headers for one outgoing HTTP request (one attempt or redirect hop)."""
        out = [(names.request_id, context.request_id)]
        if context.tenant is not None:
            out.append((names.tenant, context.tenant))
        if context.team is not None:
            out.append((names.team, context.team))
        out.extend(self.native(context, names))
        return out


def _metadata(context: CorrelationContext) -> str:
    """The context as a compact JSON object of strings (absent values left out)."""
    fields = {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}
    return json.dumps(
        {key: value for key, value in fields.items() if value is not None}, separators=(",", ":")
    )


def _generic(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    return []


def _helicone(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    out = [("Helicone-Property-Request-Id", context.request_id)]
    if context.tenant is not None:
        out.append(("Helicone-Property-Tenant", context.tenant))
    if context.team is not None:
        out.append(("Helicone-Property-Team", context.team))
    return out


def _portkey(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    # Portkey skips listed headers that are absent, so all three are named: an explicit
    # tenant or team set on one call is forwarded too.
    forward = ",".join(name.lower() for name in (names.request_id, names.tenant, names.team))
    return [
        ("x-portkey-trace-id", context.request_id),
        ("x-portkey-metadata", _metadata(context)),
        ("x-portkey-forward-headers", forward),
    ]


def _litellm(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    return [
        ("x-litellm-trace-id", context.request_id),
        ("x-litellm-spend-logs-metadata", _metadata(context)),
        ("x-litellm-call-id", str(uuid.uuid4())),
    ]


PROFILES: dict[str, HeaderProfile] = {
    "generic": HeaderProfile("generic", (), _generic),
    "helicone": HeaderProfile(
        "helicone",
        ("Helicone-Property-Request-Id", "Helicone-Property-Tenant", "Helicone-Property-Team"),
        _helicone,
    ),
    "portkey": HeaderProfile(
        "portkey",
        ("x-portkey-trace-id", "x-portkey-metadata", "x-portkey-forward-headers"),
        _portkey,
    ),
    "litellm": HeaderProfile(
        "litellm",
        ("x-litellm-trace-id", "x-litellm-spend-logs-metadata", "x-litellm-call-id"),
        _litellm,
    ),
}


def get_profile(name: str) -> HeaderProfile:
    """The profile called ``name``; ``KeyError`` when there is none."""
    return PROFILES[name]
