"""CorrelationContext, bind_context and the helpers that carry the context into threads."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import pickle
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from aigw_middleware import CorrelationContext, bind_context, current_context
from aigw_middleware._rules import _is_valid_label, _is_valid_request_id, _is_valid_user
from aigw_middleware.context import (
    AsyncBoundIterator,
    BoundIterator,
    ContextThreadPoolExecutor,
    _carried,
    _carry,
    _new_request_id,
    _reset_context,
    _safe_context,
    _set_context,
    _unchecked_context,
    wrap,
)


def test_nothing_is_bound_outside_a_request() -> None:
    assert current_context() is None


def test_bind_context_binds_all_five_values_and_restores_afterwards() -> None:
    with bind_context(
        request_id="req-1", tenant="acme", team="ml", user="u-42", session="chat-7"
    ) as bound:
        assert current_context() == CorrelationContext("req-1", "acme", "ml", "u-42", "chat-7")
        assert bound is current_context()
    assert current_context() is None


def test_a_session_is_never_generated() -> None:
    with bind_context(user="u-42") as bound:
        assert bound.session is None


def test_bind_context_generates_a_32_hex_request_id_when_none_is_given() -> None:
    with bind_context(tenant="acme") as bound:
        assert len(bound.request_id) == 32
        int(bound.request_id, 16)


def test_nested_bind_replaces_every_field_and_restores_the_outer_one() -> None:
    with bind_context(request_id="outer", tenant="acme", team="ml"):
        with bind_context(request_id="inner") as inner:
            assert inner == CorrelationContext("inner", None, None, None, None)
        assert current_context() == CorrelationContext("outer", "acme", "ml")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"request_id": ""}, "request_id"),
        ({"request_id": "x" * 129}, "request_id"),
        ({"request_id": "a\r\nb"}, "request_id"),
        ({"request_id": "<script>"}, "request_id"),
        ({"tenant": "acme corp"}, "tenant"),
        ({"tenant": "t" * 65}, "tenant"),
        ({"team": "-leading-dash"}, "team"),
        ({"team": "ünïcode"}, "team"),
        ({"user": "u" * 129}, "user"),
        ({"user": "jane doe"}, "user"),
        ({"session": "s" * 129}, "session"),
        ({"session": "chat\r\n7"}, "session"),
    ],
)
def test_bind_context_rejects_invalid_values(kwargs: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field), bind_context(**kwargs):
        pass  # pragma: no cover
    assert current_context() is None


def test_context_is_frozen() -> None:
    context = CorrelationContext("r")
    with pytest.raises(AttributeError):
        context.tenant = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "value",
    ["a", "A1", "x" * 128, "0af3-b.c_d:e;f=g@h/i+j", "550e8400-e29b-41d4-a716-446655440000"],
)
def test_valid_request_ids(value: str) -> None:
    assert _is_valid_request_id(value)


@pytest.mark.parametrize("value", ["", "-a", "x" * 129, "a b", "a,b", "é", None, 5])
def test_invalid_request_ids(value: object) -> None:
    assert not _is_valid_request_id(value)


@pytest.mark.parametrize(("value", "ok"), [("acme", True), ("t" * 64, True), ("a/b", False)])
def test_label_rule(value: str, ok: bool) -> None:
    assert _is_valid_label(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("u-42", True),
        ("9f1c2d3e-4b5a-4c6d-8e7f-001122334455", True),
        ("jane.doe@example.com", True),
        ("u" * 128, True),
        ("u" * 129, False),
        ("jane doe", False),
        ("", False),
    ],
)
def test_user_rule_is_the_tenant_charset_up_to_128_characters(value: str, ok: bool) -> None:
    assert _is_valid_user(value) is ok


def test_new_request_ids_are_unique() -> None:
    assert len({_new_request_id() for _ in range(1000)}) == 1000


def test_set_and_reset_with_a_token() -> None:
    token = _set_context(CorrelationContext("r1", "acme"))
    try:
        assert current_context() == CorrelationContext("r1", "acme")
    finally:
        _reset_context(token)
    assert current_context() is None


def test_a_plain_thread_does_not_see_the_context() -> None:
    seen: list[CorrelationContext | None] = []
    with bind_context(request_id="r1"):
        thread = threading.Thread(target=lambda: seen.append(current_context()))
        thread.start()
        thread.join(5)
    assert seen == [None]


def test_wrap_carries_the_context_into_threads_even_concurrently() -> None:
    seen: list[CorrelationContext | None] = []
    barrier = threading.Barrier(4, timeout=5)

    def work() -> None:
        barrier.wait()
        seen.append(current_context())

    with bind_context(request_id="r1", tenant="acme"):
        wrapped = wrap(work)
    threads = [threading.Thread(target=wrapped) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert seen == [CorrelationContext("r1", "acme")] * 4


def test_executor_copies_the_submitters_context_per_submit() -> None:
    with ContextThreadPoolExecutor(max_workers=2) as pool:
        with bind_context(request_id="first", tenant="acme"):
            first = pool.submit(current_context)
        with bind_context(request_id="second"):
            second = list(pool.map(lambda _: current_context(), range(3)))
        unbound = pool.submit(current_context)
        assert first.result(5) == CorrelationContext("first", "acme")
        assert second == [CorrelationContext("second")] * 3
        assert unbound.result(5) is None


async def test_asyncio_tasks_keep_their_own_context() -> None:
    async def one(i: int) -> str | None:
        with bind_context(request_id=f"task-{i}"):
            await asyncio.sleep(0)
            context = current_context()
            return context.request_id if context else None

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert results == [f"task-{i}" for i in range(50)]


def test_safe_context_keeps_a_valid_context_and_mends_an_invalid_one() -> None:
    valid = CorrelationContext("r1", "acme", "ml")
    assert _safe_context(valid) is valid
    mended = _safe_context(CorrelationContext("bad id", "acme", "bad team", "u-42", "bad session"))
    assert (mended.tenant, mended.team, mended.user, mended.session) == ("acme", None, "u-42", None)
    assert _is_valid_request_id(mended.request_id)
    with_user = CorrelationContext("r1", user="u-42", session="chat-7")
    assert _safe_context(with_user) is with_user


def _request_id() -> str | None:
    context = current_context()
    return context.request_id if context else None


CONTEXT = CorrelationContext("req-body")


def test_the_cheaply_built_context_is_an_ordinary_frozen_correlation_context() -> None:
    built = _unchecked_context("req-1", "acme", None, "u-1", "s-1", "ab" * 16)

    assert type(built) is CorrelationContext
    assert built == CorrelationContext("req-1", "acme", None, "u-1", "s-1")
    assert hash(built) == hash(CorrelationContext("req-1", "acme", None, "u-1", "s-1"))
    assert (built.team, built.trace_id) == (None, "ab" * 16)
    assert dataclasses.replace(built, team="ml").team == "ml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.tenant = "other"  # type: ignore[misc]


def test_bound_iterator_binds_each_step_and_close_and_nothing_between() -> None:
    seen: list[str | None] = []

    def body() -> Iterator[int]:
        try:
            for n in range(10):
                seen.append(_request_id())
                yield n
        finally:
            seen.append(_request_id())

    parts = BoundIterator(body(), CONTEXT)
    assert [next(parts), next(parts)] == [0, 1]
    assert current_context() is None
    parts.close()

    assert seen == ["req-body", "req-body", "req-body"]
    assert current_context() is None


def test_bound_iterator_closes_a_body_that_was_never_iterated() -> None:
    closed: list[str | None] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"x"])

        def close(self) -> None:
            closed.append(_request_id())

    BoundIterator(Body(), CONTEXT).close()

    assert closed == ["req-body"]


def test_bound_iterator_binds_other_variables_next_to_the_context() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("other", default="unset")

    @contextmanager
    def other_set() -> Iterator[None]:
        token = variable.set("set")
        try:
            yield
        finally:
            variable.reset(token)

    parts = BoundIterator((variable.get() for _ in range(2)), CONTEXT, other_set)

    assert list(parts) == ["set", "set"]
    assert variable.get() == "unset"


async def test_async_bound_iterator_binds_each_step_and_aclose() -> None:
    seen: list[str | None] = []

    async def body() -> AsyncIterator[int]:
        try:
            for n in range(10):
                seen.append(_request_id())
                yield n
        finally:
            seen.append(_request_id())

    parts = AsyncBoundIterator(body(), CONTEXT)
    assert await anext(parts) == 0
    assert current_context() is None
    await parts.aclose()

    assert seen == ["req-body", "req-body"]


async def test_an_abandoned_async_body_is_closed_bound_when_its_task_ends() -> None:
    cleanup: list[str | None] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            cleanup.append(_request_id())

    async def serve_one_part_then_give_up() -> None:
        parts = AsyncBoundIterator(body(), CONTEXT)
        await anext(parts)

    await asyncio.create_task(serve_one_part_then_give_up())
    for _ in range(3):
        await asyncio.sleep(0)

    assert cleanup == ["req-body"]


# --- bind_context as a decorator -----------------------------------------------------------


def test_bind_context_as_a_decorator_binds_a_fresh_request_id_for_each_call() -> None:
    @bind_context(tenant="acme", team="reports")
    def run() -> CorrelationContext | None:
        return current_context()

    first, second = run(), run()

    assert first is not None
    assert second is not None
    assert (first.tenant, first.team, second.tenant, second.team) == ("acme", "reports") * 2
    assert first.request_id != second.request_id
    assert current_context() is None


def test_bind_context_as_a_decorator_keeps_a_given_request_id_and_restores_the_outer_context() -> (
    None
):
    @bind_context(request_id="nightly-report")
    def run(x: int, *, y: int) -> tuple[int, CorrelationContext | None]:
        return x + y, current_context()

    with bind_context(request_id="outer", tenant="acme") as outer:
        total, inside = run(1, y=2)
        assert current_context() is outer

    assert total == 3
    assert inside == CorrelationContext("nightly-report")
    assert run.__name__ == "run"


def test_bind_context_as_a_decorator_resets_after_an_exception() -> None:
    @bind_context(tenant="acme")
    def run() -> None:
        raise RuntimeError("failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        run()
    assert current_context() is None


def test_bind_context_rejects_invalid_values_when_decorating() -> None:
    with pytest.raises(ValueError, match="tenant"):

        @bind_context(tenant="acme corp")
        def run() -> None:  # pragma: no cover
            pass


async def test_bind_context_decorates_a_coroutine_function_binding_while_it_runs() -> None:
    @bind_context(tenant="acme")
    async def run() -> CorrelationContext | None:
        await asyncio.sleep(0)
        return current_context()

    first, second = await asyncio.gather(run(), run())

    assert first is not None
    assert second is not None
    assert (first.tenant, second.tenant) == ("acme", "acme")
    assert first.request_id != second.request_id
    assert current_context() is None


def test_bind_context_decorator_binds_per_call_in_each_thread() -> None:
    seen: list[str] = []

    @bind_context(tenant="acme")
    def run() -> None:
        context = current_context()
        assert context is not None
        seen.append(context.request_id)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(seen)) == 4


def test_one_bind_context_can_be_entered_again() -> None:
    binding = bind_context(tenant="acme")
    with binding as first:
        pass
    with binding as second:
        assert current_context() is second

    assert first.request_id != second.request_id
    assert current_context() is None


def test_the_clients_a_context_carries_are_not_part_of_its_value() -> None:
    clients = object()
    context = _unchecked_context("req-1", "acme", None, None, None, None)
    _carry(context, clients)
    plain = CorrelationContext("req-1", "acme")

    assert _carried(context) is clients
    assert context == plain
    assert hash(context) == hash(plain)
    assert repr(context) == repr(plain)
    assert [field.name for field in dataclasses.fields(context)] == [
        "request_id",
        "tenant",
        "team",
        "user",
        "session",
        "trace_id",
    ]
    assert _carried(dataclasses.replace(context)) is None
    assert _carried(pickle.loads(pickle.dumps(context))) is None
    assert _carried(plain) is None
    assert _carried(None) is None
    # Python 3.10 and 3.11 raise TypeError there, from the slots class's frozen __setattr__.
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
        context._clients = None  # type: ignore[misc]


def test_bind_context_hands_on_the_clients_the_bound_context_carries() -> None:
    clients = object()
    outer = CorrelationContext("req-1")
    _carry(outer, clients)
    token = _set_context(outer)
    try:
        with bind_context(tenant="acme") as inner:
            assert _carried(inner) is clients
            assert inner.request_id != "req-1"  # the values are its own
    finally:
        _reset_context(token)
    with bind_context() as alone:
        assert _carried(alone) is None
