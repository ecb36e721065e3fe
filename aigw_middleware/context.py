"""The correlation context: one ContextVar holding the request ID, tenant, team, user and session.

Adapters bind a :class:`CorrelationContext` once per incoming request and reset it with its
token in the same frame; the outbound transport reads it. Scripts, tasks and tests use
:func:`bind_context`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, cast

from ._rules import _REQUEST_ID_RULE, _RULES, _is_valid_request_id, _new_request_id

__all__ = [
    "AsyncBoundIterator",
    "BoundIterator",
    "ContextThreadPoolExecutor",
    "CorrelationContext",
    "bind_context",
    "current_context",
    "wrap",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


class _Carrier:
    """A slot beside :class:`CorrelationContext`'s fields and not one of them: the
    :class:`~aigw_middleware._shared.SharedClients` of the adapter that bound the context (the
    ASGI or WSGI middleware with a config of its own; Flask's for a streamed body) for
    ``get_client()``, else None or unset.

    Carried on the context rather than in a ContextVar of its own, it costs a request one slot
    store instead of a second ContextVar's set and reset. Not part of equality, ``repr``,
    ``dataclasses.replace`` or pickling; :func:`bind_context` and :func:`_set_context` hand the
    bound context's on to the context they bind.
    """

    __slots__ = ("_clients",)
    _clients: object


#: Sets a context's carried clients past its frozen ``__setattr__``.
_carry = cast(Callable[[object, object], None], _Carrier.__dict__["_clients"].__set__)


def _carried(context: object) -> object:
    """The clients ``context`` carries; None when it carries none, or is None."""
    return getattr(context, "_clients", None)


@dataclass(frozen=True, slots=True)
class CorrelationContext(_Carrier):
    """Who is calling the gateway and which incoming request caused the call.

    Construct it through :func:`bind_context` or an adapter, which validate the values.
    ``trace_id`` is the OpenTelemetry trace (hex) that was active when an adapter made the
    context: a record of it only, never sent by this package, and not part of equality.
    """

    request_id: str
    """The request ID, sent as ``X-AI-Request-Id``: 1 to 128 characters of
    ``[A-Za-z0-9][A-Za-z0-9._:;=@/+-]*``."""
    tenant: str | None = None
    """The tenant, sent as ``X-AI-Tenant``: 1 to 64 characters of ``[A-Za-z0-9][A-Za-z0-9._:@-]*``."""
    team: str | None = None
    """The team, sent as ``X-AI-Team``; the same characters as the tenant."""
    user: str | None = None
    """The end user (an opaque ID), sent as ``X-AI-User``; the tenant's characters, up to 128."""
    session: str | None = None
    """The session (a conversation or an agent run), sent as ``X-AI-Session``; the request ID's
    rules."""
    trace_id: str | None = field(default=None, compare=False)
    """The OpenTelemetry trace ID (32 hex characters) active when an adapter bound the context."""


class _Draft(_Carrier):
    """:class:`CorrelationContext`'s slots without its frozen ``__setattr__``.

    The dataclass's ``__init__`` stores each field with ``object.__setattr__``, which costs
    about four times as much as six plain slot stores and a class change; adapters build a
    context on every request, so :func:`_unchecked_context` builds it this way.
    """

    __slots__ = CorrelationContext.__slots__
    request_id: str
    tenant: str | None
    team: str | None
    user: str | None
    session: str | None
    trace_id: str | None


def _unchecked_context(
    request_id: str,
    tenant: str | None,
    team: str | None,
    user: str | None,
    session: str | None,
    trace_id: str | None,
) -> CorrelationContext:
    """``CorrelationContext(request_id, tenant, team, user, session, trace_id)``, built cheaply;
    for values the caller has validated."""
    draft = _Draft()
    draft.request_id = request_id
    draft.tenant = tenant
    draft.team = team
    draft.user = user
    draft.session = session
    draft.trace_id = trace_id
    draft._clients = None
    draft.__class__ = CorrelationContext  # type: ignore[assignment]
    return draft  # type: ignore[return-value]


_current: contextvars.ContextVar[CorrelationContext | None] = contextvars.ContextVar(
    "aigw_correlation", default=None
)


def current_context() -> CorrelationContext | None:
    """The context bound in the running thread or task, or None outside any request."""
    return _current.get()


def _set_context(
    context: CorrelationContext | None,
) -> contextvars.Token[CorrelationContext | None]:
    """Bind ``context`` and return the token; pass it to :func:`_reset_context` in the same frame.

    ``context`` takes on the clients the bound context carries (a task run eagerly in a
    request keeps that request's ``get_client()``).
    """
    _carry_on(context)
    return _current.set(context)


def _carry_on(context: CorrelationContext | None) -> None:
    """Let ``context``, about to be bound, carry the clients of the context bound now."""
    clients = _carried(_current.get())
    if clients is not None and context is not None:
        _carry(context, clients)


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
        request_id if _is_valid_request_id(request_id) else _new_request_id(),
        **kept,
        trace_id=context.trace_id,
    )


class _Binding:
    """What :func:`bind_context` returns: a context manager, and a decorator that binds a context
    of its own around each call."""

    __slots__ = ("_tokens", "_values")

    def __init__(self, values: dict[str, str | None]) -> None:
        _make_context(**values)  # invalid values fail here, where they are written
        self._values = values
        self._tokens: list[contextvars.Token[CorrelationContext | None]] = []

    def __enter__(self) -> CorrelationContext:
        context = _make_context(**self._values)
        self._tokens.append(_set_context(context))
        return context

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, fn: _F) -> _F:
        values = self._values
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with _Binding(values):
                    return await fn(*args, **kwargs)

            return cast(_F, run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with _Binding(values):
                return fn(*args, **kwargs)

        return cast(_F, run)


def bind_context(
    *,
    request_id: str | None = None,
    tenant: str | None = None,
    team: str | None = None,
    user: str | None = None,
    session: str | None = None,
) -> _Binding:
    """Bind a correlation context: for scripts, management commands, tasks and tests.

    As a context manager, ``with bind_context(tenant="acme") as context:`` binds it for the block
    and gives the bound :class:`CorrelationContext`. As a decorator, ``@bind_context(tenant="acme")``
    binds one around each call of a function or coroutine function, with a fresh request ID per
    call unless ``request_id`` is given: a management command's ``handle`` or a script's ``main``.

    A fresh request ID is generated when ``request_id`` is None; a session never is. Raises
    ``ValueError`` for an invalid value, when called. All five fields are bound: nothing of an
    outer context leaks in; what was bound before is bound again afterwards.
    """
    return _Binding(
        {"request_id": request_id, "tenant": tenant, "team": team, "user": user, "session": session}
    )


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
        """Schedule ``fn(*args, **kwargs)`` to run in a copy of the submitter's context."""
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


#: Makes a context manager that binds something else next to the correlation context.
_ExtraBinding = Callable[[], AbstractContextManager[object]]


@contextmanager
def _bound_to(context: CorrelationContext | None, *also: _ExtraBinding) -> Iterator[None]:
    """Bind ``context`` (and enter a context manager made by each of ``also``) for the ``with``
    block only.

    The correlation context is reset with its token on the way out, so whatever was bound
    before is bound again.
    """
    token = _current.set(context)
    try:
        with ExitStack() as stack:
            for make in also:
                stack.enter_context(make())
            yield
    finally:
        _current.reset(token)


class BoundIterator(Generic[_T]):
    """``parts`` run with ``context`` bound around each step and around :meth:`close`.

    For streamed response bodies, which a server iterates after the request's frame has reset its
    context: each step sees the request's context and nothing stays bound between steps. The
    server's ``close()`` (at the end, or when the client went away mid-stream) closes ``parts``
    with the context bound too, so the body's cleanup (a ``finally`` in a generator) sees it.
    ``parts`` is turned into an iterator at the first step, with the context bound.
    """

    def __init__(
        self, parts: Iterable[_T], context: CorrelationContext | None, *also: _ExtraBinding
    ) -> None:
        self._parts = parts
        self._iterator: Iterator[_T] | None = None
        self._context = context
        self._also = also

    def __iter__(self) -> BoundIterator[_T]:
        return self

    def __next__(self) -> _T:
        if self._also:
            with _bound_to(self._context, *self._also):
                return self._next()
        # Each step of every streamed (and, under Flask, every) body: no context manager.
        token = _current.set(self._context)
        try:
            return self._next()
        finally:
            _current.reset(token)

    def _next(self) -> _T:
        if self._iterator is None:
            self._iterator = iter(self._parts)
        return next(self._iterator)

    def close(self) -> None:
        """Close ``parts`` (when it can be closed) with the context bound."""
        close = getattr(self._parts, "close", None)
        if close is None and self._iterator is not None:
            close = getattr(self._iterator, "close", None)
        if close is None:
            return
        if self._also:
            with _bound_to(self._context, *self._also):
                close()
            return
        token = _current.set(self._context)
        try:
            close()
        finally:
            _current.reset(token)


class AsyncBoundIterator(Generic[_T]):
    """The async :class:`BoundIterator`: ``parts`` with ``context`` bound around each step and
    around :meth:`aclose`.

    A consumer may drop an async body unfinished without closing it (Django's ASGI handler does
    when the client disconnects), leaving its cleanup to the garbage collector, in whatever
    context is current then. So the asyncio task that takes the first step also closes it, bound,
    as soon as that task ends.
    """

    def __init__(
        self, parts: AsyncIterable[_T], context: CorrelationContext | None, *also: _ExtraBinding
    ) -> None:
        self._parts = parts
        self._iterator: AsyncIterator[_T] | None = None
        self._context = context
        self._also = also
        self._done = False

    def __aiter__(self) -> AsyncBoundIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._done:
            raise StopAsyncIteration
        with _bound_to(self._context, *self._also):
            if self._iterator is None:
                self._iterator = aiter(self._parts)
                _on_task_end(self._close_later)
            try:
                return await anext(self._iterator)
            except StopAsyncIteration:
                self._done = True
                raise

    async def aclose(self) -> None:
        """Close ``parts`` (when it can be closed) with the context bound; once."""
        if self._done:
            return
        self._done = True
        aclose = getattr(self._iterator or self._parts, "aclose", None)
        if aclose is not None:
            with _bound_to(self._context, *self._also):
                await aclose()

    def _close_later(self, task: asyncio.Task[Any]) -> None:
        if not self._done:
            task.get_loop().create_task(self.aclose())


def _on_task_end(callback: Callable[[asyncio.Task[Any]], object]) -> None:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # not running under asyncio
        return
    if task is not None:
        task.add_done_callback(callback)
