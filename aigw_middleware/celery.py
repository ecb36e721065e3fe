"""Celery: the correlation context travels with each task, from the publisher to the worker.

``install(app)`` connects four kinds of Celery signals:

- ``before_task_publish`` copies the bound context into the task message headers
  (``aigw_request_id``, ``aigw_tenant``, ``aigw_team``, ``aigw_user``, ``aigw_session``); with
  no context bound it adds nothing.
- ``task_prerun`` binds the context the message carries in the worker, with a fresh request ID
  when it carries none (``aigw_middleware.propagation.extract``). Invalid values (not strings,
  too long, outside their rule) are dropped with one WARNING per task.
- ``task_postrun`` resets it, so the next task on that worker process or thread starts clean;
  ``task_failure``, ``task_retry``, ``task_revoked`` and ``task_internal_error`` reset a binding
  that no ``task_postrun`` will.
- Eager tasks (``task_always_eager``, ``Task.apply``) are never published: ``task_prerun`` adds
  what publishing would have added, so they get what a worker would give them: the caller's
  context, under headers passed to ``apply_async`` / ``apply``, and one request ID across retries.

Because a running task has its context bound, the tasks it enqueues carry the same request ID.
"""

from __future__ import annotations

import threading
import weakref
from contextvars import Token
from typing import Any

try:
    from celery import Celery, signals  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "aigw_middleware.celery needs Celery: pip install 'aigw-middleware[celery]'"
    ) from exc

from .context import (
    CorrelationContext,
    _make_context,
    _reset_context,
    _set_context,
    current_context,
)
from .propagation import _KEYS, _carried_values, extract

__all__ = ["install"]

#: Task message headers that carry the context (Celery shows them as ``task.request.<name>``).
_REQUEST_ID_HEADER = _KEYS["request_id"]
_TENANT_HEADER = _KEYS["tenant"]
_TEAM_HEADER = _KEYS["team"]
_USER_HEADER = _KEYS["user"]
_SESSION_HEADER = _KEYS["session"]
_HEADERS = tuple(_KEYS.values())

_UID = "aigw_middleware.celery"
_apps: weakref.WeakSet[Any] = weakref.WeakSet()
# Keyed by thread as well: a retried task can start again under the same ID, in another worker
# thread, before its first run has reached task_postrun.
_tokens: dict[tuple[str, int], Token[CorrelationContext | None]] = {}


def install(app: Celery) -> None:
    """Carry the correlation context through ``app``'s tasks; calling it again does nothing.

    Call it once where the Celery app is created (web processes and workers import the same
    module). Workers bind the context only for tasks of an installed app. Publishing cannot be
    told apart by app in Celery's signals: once any app is installed, every task message sent
    from this process carries the bound context (other apps' workers ignore the headers).
    """
    _apps.add(app)
    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=f"{_UID}.publish")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=f"{_UID}.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=f"{_UID}.postrun")
    for name in ("task_failure", "task_retry", "task_revoked", "task_internal_error"):
        getattr(signals, name).connect(_on_end, weak=False, dispatch_uid=f"{_UID}.{name}")


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        _add_context_headers(headers, current_context())


def _add_context_headers(headers: dict[str, Any], context: CorrelationContext | None) -> None:
    """What publishing adds to a message: ``context``'s valid values, under headers the caller
    passed to ``apply_async``, which win as on gateway calls."""
    for name, value in _carried_values(context).items():
        headers.setdefault(name, value)


def _is_ours(task: Any) -> bool:
    return getattr(task, "app", None) in _apps


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or not _is_ours(task):
        return
    request = task.request
    headers = _message_headers(request)
    eager = getattr(request, "is_eager", False)
    if eager:
        # An eager task is never published: add here what publishing would have added, so it
        # gets the context a worker would give it (headers passed to apply win over the caller's).
        _add_context_headers(headers, current_context())
    context = extract(headers) or _make_context()
    if eager:
        # A worker's retry is published from inside the run and so carries the bound context;
        # an eager retry takes its headers from the request instead.
        kept = {k: v for k, v in (request.headers or {}).items() if k not in _HEADERS}
        _add_context_headers(kept, context)
        request.headers = kept
    _tokens[(task_id, threading.get_ident())] = _set_context(context)


def _message_headers(request: Any) -> dict[str, Any]:
    """Our headers of the running task (Celery puts message headers on ``task.request``)."""
    custom = request.headers if isinstance(request.headers, dict) else {}
    found: dict[str, Any] = {}
    for name in _HEADERS:
        value = getattr(request, name, None)
        if value is None:
            value = custom.get(name)
        if value is not None:
            found[name] = value
    return found


def _on_postrun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is not None and _is_ours(task):
        _unbind(task_id)


def _on_end(sender: Any = None, task_id: str | None = None, request: Any = None, **_: Any) -> None:
    if not _is_ours(sender):
        return
    if task_id is None:
        task_id = request.get("id") if isinstance(request, dict) else getattr(request, "id", None)
    running = getattr(sender.request, "id", None)
    # Inside the run (failure, retry) task_postrun follows and resets; resetting here would
    # take the request ID off Celery's own failure log record.
    if task_id is not None and task_id != running:
        _unbind(task_id)


def _unbind(task_id: str) -> None:
    token = _tokens.pop((task_id, threading.get_ident()), None)
    if token is None:
        return
    try:
        _reset_context(token)
    except (ValueError, RuntimeError):
        # The token was made in another context (a pool that runs signal receivers in copies
        # of the context) or already used: leave this one clean instead.
        _set_context(None)
