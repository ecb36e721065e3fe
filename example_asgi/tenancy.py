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

DEMO_TENANTS: dict[str, dict[str, str]] = {
    "acme": {"tenant": "acme", "team": "support"},
    "globex": {"tenant": "globex", "team": "research"},
}
#: Demo users by name, and their opaque IDs (what a real app keeps as a primary key or UUID).
DEMO_USER_IDS = {"alice": "u-7f3a9c", "bob": "u-91c2e4"}


def resolve_tenant(scope: Mapping[str, Any]) -> dict[str, str | None]:
    """Tenant and team of a demo tenant, and a demo user's ID, named in the query string."""
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    user = DEMO_USER_IDS.get(query.get("user", [""])[0])
    return {**DEMO_TENANTS.get(query.get("tenant", [""])[0], {}), "user": user}
