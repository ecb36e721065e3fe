"""The demo's tenant resolver, which receives the ASGI scope.

A real app derives the tenant from the authenticated user (for example ``scope["user"]``, set by
an authentication middleware placed outside ``AIGatewayMiddleware``). This demo lets the caller
pick one of two demo tenants with ``?tenant=acme`` or ``?tenant=globex`` so the gateway's
per-tenant view can be shown; any other value means no tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

DEMO_TENANTS: dict[str, tuple[str, str]] = {
    "acme": ("acme", "support"),
    "globex": ("globex", "research"),
}


def resolve_tenant(scope: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(tenant, team)`` for a demo tenant named in the query string, else None."""
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    return DEMO_TENANTS.get(query.get("tenant", [""])[0])
