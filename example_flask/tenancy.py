"""The demo's tenant resolver.

A real app derives the tenant from the authenticated user (a session, a verified token). This
demo lets the caller pick one of two demo tenants with ``?tenant=acme`` or ``?tenant=globex`` so
the gateway's per-tenant view can be shown; any other value means no tenant. ``?user=alice``
stands for a logged-in user: the gateway gets that user's opaque ID, never the name. The
conversation (session) comes from the incoming ``X-AI-Session`` header, which the middleware
reads by itself.
"""

from __future__ import annotations

from flask import Request

DEMO_TENANTS: dict[str, dict[str, str]] = {
    "acme": {"tenant": "acme", "team": "support"},
    "globex": {"tenant": "globex", "team": "research"},
}
#: Demo users by name, and their opaque IDs (what a real app keeps as a primary key or UUID).
DEMO_USER_IDS = {"alice": "u-7f3a9c", "bob": "u-91c2e4"}


def resolve_tenant(request: Request) -> dict[str, str | None]:
    """Tenant and team of a demo tenant, and a demo user's ID, named in the query string."""
    user = DEMO_USER_IDS.get(request.args.get("user", ""))
    return {**DEMO_TENANTS.get(request.args.get("tenant", ""), {}), "user": user}
