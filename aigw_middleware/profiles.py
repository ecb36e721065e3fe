"""Gateway header profiles: the correlation headers each gateway understands natively.

Every profile sends the generic ``X-AI-Request-Id``, ``X-AI-Tenant`` and ``X-AI-Team`` (names
configurable); the gateway-specific profiles add that gateway's own headers so its logs,
analytics and budgets see the same values.
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


def _generic(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    return []


def _helicone(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    out = [("Helicone-Property-Request-Id", context.request_id)]
    if context.tenant is not None:
        out.append(("Helicone-Property-Tenant", context.tenant))
        out.append(("Helicone-User-Id", context.tenant))
    if context.team is not None:
        out.append(("Helicone-Property-Team", context.team))
    return out


def _portkey(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    metadata = {"request_id": context.request_id}
    forward = [names.request_id]
    if context.tenant is not None:
        metadata["tenant"] = context.tenant
        metadata["_user"] = context.tenant
        forward.append(names.tenant)
    if context.team is not None:
        metadata["team"] = context.team
        forward.append(names.team)
    return [
        ("x-portkey-trace-id", context.request_id),
        ("x-portkey-metadata", json.dumps(metadata, separators=(",", ":"))),
        ("x-portkey-forward-headers", ",".join(name.lower() for name in forward)),
    ]


def _litellm(context: CorrelationContext, names: CorrelationNames) -> list[tuple[str, str]]:
    # x-litellm-call-id is a primary key in LiteLLM's spend logs: fresh for every attempt.
    return [("x-litellm-trace-id", context.request_id), ("x-litellm-call-id", str(uuid.uuid4()))]


PROFILES: dict[str, HeaderProfile] = {
    "generic": HeaderProfile("generic", (), _generic),
    "helicone": HeaderProfile(
        "helicone",
        (
            "Helicone-Property-Request-Id",
            "Helicone-Property-Tenant",
            "Helicone-Property-Team",
            "Helicone-User-Id",
        ),
        _helicone,
    ),
    "portkey": HeaderProfile(
        "portkey",
        ("x-portkey-trace-id", "x-portkey-metadata", "x-portkey-forward-headers"),
        _portkey,
    ),
    "litellm": HeaderProfile("litellm", ("x-litellm-trace-id", "x-litellm-call-id"), _litellm),
}


def get_profile(name: str) -> HeaderProfile:
    """The profile called ``name``; ``KeyError`` when there is none."""
    return PROFILES[name]
