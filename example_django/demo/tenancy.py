"""The tenant resolver named by ``AIGW["TENANT_RESOLVER"]``.

A real project maps its logged-in user (``request.user``) to an organisation, a team and an
opaque user ID (its primary key or a UUID, never a name or an e-mail address). The example has
no user database, so its "users" are the names below, remembered in the session by
``/login/?user=alice``. The conversation (session) comes from the incoming ``X-AI-Session``
header, which the middleware reads by itself.
"""

from __future__ import annotations

from django.http import HttpRequest

#: Demo users: their tenant, team and opaque user ID.
DEMO_USERS = {
    "alice": {"tenant": "acme", "team": "research", "user": "u-7f3a9c"},
    "bob": {"tenant": "globex", "team": "support", "user": "u-91c2e4"},
}
SESSION_KEY = "demo_user"


def tenant_for_request(request: HttpRequest) -> dict[str, str] | None:
    """Tenant, team and user ID of this request's demo user, or None when nobody is logged in.

    DEMO ONLY: besides the session, the user may be named by an ``X-Demo-User`` header, so a
    single request can act as a user. Anyone can send that header; never trust it in a real
    project. The header is read from ``META``: ``request.headers`` would build a headers object
    from every key of ``META`` on each request (about 80k instructions), for one header.
    """
    name = request.session.get(SESSION_KEY) or request.META.get("HTTP_X_DEMO_USER")
    return DEMO_USERS.get(name) if name else None
