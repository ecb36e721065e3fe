"""The tenant resolver named by ``AIGW["TENANT_RESOLVER"]``.

A real project maps its logged-in user (``request.user``) to an organisation and a team. The
example has no user database, so its "users" are the names below, remembered in the session
by ``/login/?user=alice``.
"""

from __future__ import annotations

from django.http import HttpRequest

#: Demo users and their (tenant, team).
DEMO_USERS = {
    "alice": ("acme", "research"),
    "bob": ("globex", "support"),
}
SESSION_KEY = "demo_user"


def tenant_for_request(request: HttpRequest) -> tuple[str, str] | None:
    """The (tenant, team) of the demo user of this request, or None when nobody is logged in.

    DEMO ONLY: besides the session, the user may be named by an ``X-Demo-User`` header, so a
    single request can act as a user. Anyone can send that header; never trust it in a real
    project.
    """
    name = request.session.get(SESSION_KEY) or request.headers.get("X-Demo-User")
    return DEMO_USERS.get(name) if name else None
