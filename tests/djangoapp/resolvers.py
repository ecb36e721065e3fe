"""Tenant resolvers for the tests, named by dotted path in settings.AIGW."""

from __future__ import annotations

from django.http import HttpRequest


def tenant_from_user(request: HttpRequest) -> tuple[str | None, str | None] | None:
    """The logged-in user's name as tenant; staff users are in team ``staff``."""
    user = request.user
    if not user.is_authenticated:
        return None
    return user.get_username(), "staff" if user.is_staff else "members"


def fixed_tenant(request: HttpRequest) -> tuple[str | None, str | None]:
    """Always tenant ``resolved-tenant`` and team ``resolved-team``."""
    return "resolved-tenant", "resolved-team"


NOT_CALLABLE = "a string, not a function"


def attribution_from_user(request: HttpRequest) -> dict[str, str | None] | None:
    """Tenant ``acme`` and the logged-in user's opaque ID (its primary key) as the user."""
    user = request.user
    if not user.is_authenticated:
        return None
    return {"tenant": "acme", "user": f"u-{user.pk}"}
