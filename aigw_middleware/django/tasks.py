"""Django's tasks framework: the correlation context travels with each task to the worker.

Works with ``django.tasks`` (Django 6.0 and later) and with the ``django-tasks`` backport on
older Django, with any backend (the backport's ``DatabaseBackend`` and its ``db_worker``
command, ``ImmediateBackend``, third-party ones).

The framework keeps nothing but a task's arguments, so the context travels as one reserved
keyword argument, ``aigw_correlation`` (a dict of the carrier keys of
:mod:`aigw_middleware.propagation`): define tasks with this module's :func:`task` instead of
Django's, or give a backend of your own ``task_class = CorrelationTask``::

    from aigw_middleware.django.tasks import task

    @task()
    def summarise(text): ...

- ``summarise.enqueue(text)`` (and ``aenqueue``) adds ``aigw_correlation`` with the bound
  context; outside any context, a fresh request ID of its own. An ``aigw_correlation`` passed
  by the caller wins.
- Where the backend runs the task (``Task.call`` / ``Task.acall``), the argument is taken out
  before the function is called, and its context is bound for the run and reset afterwards,
  also when the task raises. Invalid values in it (not strings, too long, outside their rule,
  not a dict at all) are dropped with one WARNING and the task runs with a fresh request ID; it
  never fails for them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .._jobs import bound_from, carrier_at_enqueue
from ..context import current_context

if TYPE_CHECKING or find_spec("django.tasks") is not None:
    from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
    from django.tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskResult
else:  # pragma: no cover - Django before 6.0 with the django-tasks backport
    try:
        from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
        from django_tasks.base import DEFAULT_TASK_PRIORITY, Task, TaskResult
    except ImportError as exc:
        raise ImportError(
            "aigw_middleware.django.tasks needs Django 6.0 or the django-tasks backport: "
            "pip install django-tasks"
        ) from exc

__all__ = ["CARRIER_KWARG", "CorrelationTask", "task"]

CARRIER_KWARG = "aigw_correlation"
"""The reserved keyword argument that carries the context: a dict of the carrier keys."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


if TYPE_CHECKING or hasattr(Task, "__class_getitem__"):
    _GenericTask = Task
else:  # Django 6's Task is generic only in its type stubs; the backport's is generic at runtime

    class _GenericTask(Task, Generic[_P, _T]):
        pass


class CorrelationTask(_GenericTask[_P, _T]):
    """A task whose enqueuing adds the bound context and whose run binds it."""

    def enqueue(self, *args: Any, **kwargs: Any) -> TaskResult[_P, _T]:
        """Enqueue the task with the bound context in its ``aigw_correlation`` argument."""
        return super().enqueue(*args, **_with_carrier(kwargs))

    async def aenqueue(self, *args: Any, **kwargs: Any) -> TaskResult[_P, _T]:
        """The async :meth:`enqueue`."""
        return await super().aenqueue(*args, **_with_carrier(kwargs))

    def call(self, *args: Any, **kwargs: Any) -> _T:
        """Run the task (as its backend does) with the context its ``aigw_correlation`` argument
        carries bound; a direct call without one runs in the caller's context."""
        if CARRIER_KWARG not in kwargs and current_context() is not None:
            return super().call(*args, **kwargs)
        carrier = kwargs.pop(CARRIER_KWARG, None)
        with bound_from(carrier):
            return super().call(*args, **kwargs)

    async def acall(self, *args: Any, **kwargs: Any) -> _T:
        """The async :meth:`call`."""
        if CARRIER_KWARG not in kwargs and current_context() is not None:
            return await super().acall(*args, **kwargs)
        carrier = kwargs.pop(CARRIER_KWARG, None)
        with bound_from(carrier):
            return await super().acall(*args, **kwargs)


def _with_carrier(kwargs: dict[str, Any]) -> dict[str, Any]:
    if CARRIER_KWARG in kwargs:
        return kwargs
    return {**kwargs, CARRIER_KWARG: carrier_at_enqueue()}


@overload
def task(function: Callable[_P, _T], /) -> CorrelationTask[_P, _T]: ...


@overload
def task(
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
) -> Callable[[Callable[_P, _T]], CorrelationTask[_P, _T]]: ...


def task(
    function: Callable[_P, _T] | None = None,
    /,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
) -> CorrelationTask[_P, _T] | Callable[[Callable[_P, _T]], CorrelationTask[_P, _T]]:
    """Django's ``@task`` decorator, making a :class:`CorrelationTask`: same arguments."""

    def wrapper(func: Callable[_P, _T]) -> CorrelationTask[_P, _T]:
        return CorrelationTask(
            priority=priority,
            func=func,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            run_after=None,
        )

    return wrapper if function is None else wrapper(function)
