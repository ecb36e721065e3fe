"""Tenant resolvers for the tests, named by dotted path in settings.AIGW."""

from __future__ import annotations

import threading

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


#: The thread each async resolver call ran on, for the tests to compare with the event loop's.
async_resolver_threads: list[int] = []


async def async_tenant_from_user(request: HttpRequest) -> tuple[str | None, str | None] | None:
    """The async ``tenant_from_user``: ``request.auser()`` is awaited on the event loop."""
    async_resolver_threads.append(threading.get_ident())
    user = await request.auser()
    if not user.is_authenticated:
        return None
    return user.get_username(), "staff" if user.is_staff else "members"


async def async_fixed_tenant(request: HttpRequest) -> tuple[str | None, str | None]:
    """``fixed_tenant`` as a coroutine function."""
    async_resolver_threads.append(threading.get_ident())
    return "async-tenant", "async-team"


#: The thread each ``thread_noting_tenant`` call ran on.
sync_resolver_threads: list[int] = []


def thread_noting_tenant(request: HttpRequest) -> tuple[str, None]:
    """A sync resolver that notes the thread it runs on."""
    sync_resolver_threads.append(threading.get_ident())
    return "sync-tenant", None
