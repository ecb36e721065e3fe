"""The demo's tenant resolver.

A real app derives the tenant from the authenticated user (a session, a verified token). This
demo lets the caller pick one of two demo tenants with ``?tenant=acme`` or ``?tenant=globex`` so
the gateway's per-tenant view can be shown; any other value means no tenant.
"""

from __future__ import annotations

from flask import Request

DEMO_TENANTS: dict[str, tuple[str, str]] = {
    "acme": ("acme", "support"),
    "globex": ("globex", "research"),
}


def resolve_tenant(request: Request) -> tuple[str, str] | None:
    """``(tenant, team)`` for a demo tenant named in the query string, else None."""
    return DEMO_TENANTS.get(request.args.get("tenant", ""))
