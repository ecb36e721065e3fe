"""The correlation context: one ContextVar holding the request ID, tenant, team, user and session.

Adapters bind a :class:`CorrelationContext` once per incoming request and reset it with its
token in the same frame; the outbound transport reads it. Scripts, tasks and tests use
:func:`bind_context`.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "ContextThreadPoolExecutor",
    "CorrelationContext",
    "bind_context",
    "current_context",
    "wrap",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_REQUEST_ID_MAX = 128
_LABEL_MAX = 64
_USER_MAX = 128
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:;=@/+-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")


def _is_valid_request_id(value: object) -> bool:
    """True for 1 to 128 characters of ``[A-Za-z0-9][A-Za-z0-9._:;=@/+-]*``."""
    return (
        isinstance(value, str)
        and len(value) <= _REQUEST_ID_MAX
        and _REQUEST_ID_RE.fullmatch(value) is not None
    )


def _is_valid_label(value: object) -> bool:
    """True for a tenant or team: 1 to 64 characters of ``[A-Za-z0-9][A-Za-z0-9._:@-]*``."""
    return (
        isinstance(value, str)
        and len(value) <= _LABEL_MAX
        and _LABEL_RE.fullmatch(value) is not None
    )


def _is_valid_user(value: object) -> bool:
    """True for an end user: the tenant charset, 1 to 128 characters (UUIDs, e-mail-like IDs)."""
    return (
        isinstance(value, str)
        and len(value) <= _USER_MAX
        and _LABEL_RE.fullmatch(value) is not None
    )


def _new_request_id() -> str:
    """A fresh request ID: 32 lowercase hex characters."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class CorrelationContext:
    """Who is calling the gateway and which incoming request caused the call.

    Construct it through :func:`bind_context` or an adapter, which validate the values.
    """

    request_id: str
    tenant: str | None = None
    team: str | None = None
    user: str | None = None
    session: str | None = None


_current: contextvars.ContextVar[CorrelationContext | None] = contextvars.ContextVar(
    "aigw_correlation", default=None
)


def current_context() -> CorrelationContext | None:
    """The context bound in the running thread or task, or None outside any request."""
    return _current.get()


def _set_context(
    context: CorrelationContext | None,
) -> contextvars.Token[CorrelationContext | None]:
    """Bind ``context`` and return the token; pass it to :func:`_reset_context` in the same frame."""
    return _current.set(context)


def _reset_context(token: contextvars.Token[CorrelationContext | None]) -> None:
    """Restore what was bound before the matching :func:`_set_context`."""
    _current.reset(token)


def _make_context(
    *,
    request_id: str | None = None,
    tenant: str | None = None,
    team: str | None = None,
    user: str | None = None,
    session: str | None = None,
) -> CorrelationContext:
    """A validated context; a fresh request ID when ``request_id`` is None.

    A session is never generated. Raises ``ValueError`` naming the field for an invalid value.
    """
    if request_id is None:
        request_id = _new_request_id()
    elif not _is_valid_request_id(request_id):
        raise ValueError(f"invalid request_id {str(request_id)[:64]!r}: {_REQUEST_ID_RULE}")
    for name, value in (("tenant", tenant), ("team", team), ("user", user), ("session", session)):
        valid, rule = _RULES[name]
        if value is not None and not valid(value):
            raise ValueError(f"invalid {name} {str(value)[:64]!r}: {rule}")
    return CorrelationContext(request_id, tenant, team, user, session)


_REQUEST_ID_RULE = "1 to 128 characters of [A-Za-z0-9][A-Za-z0-9._:;=@/+-]*"
_LABEL_RULE = "1 to 64 characters of [A-Za-z0-9][A-Za-z0-9._:@-]*"
_USER_RULE = "1 to 128 characters of [A-Za-z0-9][A-Za-z0-9._:@-]*"
_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "tenant": (_is_valid_label, _LABEL_RULE),
    "team": (_is_valid_label, _LABEL_RULE),
    "user": (_is_valid_user, _USER_RULE),
    "session": (_is_valid_request_id, _REQUEST_ID_RULE),
}


def _safe_context(context: CorrelationContext) -> CorrelationContext:
    """``context`` itself when its values are valid; else a copy with an invalid request ID
    replaced by a fresh one and any other invalid value dropped (logged at WARNING).

    For contexts made without validation (set directly with :func:`_set_context`), before their
    values leave the process.
    """
    present = {name: getattr(context, name) for name in _RULES}
    present = {name: value for name, value in present.items() if value is not None}
    kept = {name: value for name, value in present.items() if _RULES[name][0](value)}
    request_id = context.request_id
    if kept == present and _is_valid_request_id(request_id):
        return context
    logging.getLogger("aigw_middleware").warning(
        "aigw: the bound correlation context has invalid values; sending safe ones"
    )
    return CorrelationContext(
        request_id if _is_valid_request_id(request_id) else _new_request_id(), **kept
    )


@contextmanager
def bind_context(
    *,
    request_id: str | None = None,
    tenant: str | None = None,
    team: str | None = None,
    user: str | None = None,
    session: str | None = None,
) -> Iterator[CorrelationContext]:
    """Bind a correlation context for the ``with`` block; for scripts, tasks and tests.

    A fresh request ID is generated when ``request_id`` is None; a session never is. Raises
    ``ValueError`` for an invalid value. All five fields are bound: nothing of an outer context
    leaks in.
    """
    context = _make_context(
        request_id=request_id, tenant=tenant, team=team, user=user, session=session
    )
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Return ``fn`` bound to the caller's current context, for use in another thread.

    The context is captured now; each call runs in its own copy, so the wrapped function can
    run in several threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose ``submit`` runs each job in a copy of the submitter's context.

    ``map`` goes through ``submit`` and so carries the context as well.
    """

    def submit(self, fn: Callable[..., _R], /, *args: Any, **kwargs: Any) -> Future[_R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
