"""Specification of aigw_middleware.django.tasks: the context travels in a reserved keyword.

Tasks run with the framework's ``ImmediateBackend`` (the default backend) and, as a worker
would, through ``Task.call`` outside any context; the end-to-end module runs the database
backend's ``db_worker`` processes behind a Django project under gunicorn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from aigw_middleware import bind_context, current_context, get_client
from aigw_middleware.config import GatewayConfig
from aigw_middleware.django.tasks import CARRIER_KWARG, CorrelationTask, task
from aigw_middleware.testing import FakeGateway

REQUEST_ID = "web-req-0001"
NAMES = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")


def seen_now() -> dict[str, Any] | None:
    context = current_context()
    if context is None:
        return None
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


@task()
def ask(topic: str = "hi") -> dict[str, Any] | None:
    """One gateway call; what the task saw bound. It takes no ``**kwargs``."""
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": topic}]
    )
    return seen_now()


@task
def fail() -> None:
    raise RuntimeError("task failed on purpose")


@task(takes_context=True)
def ask_with_context(context: Any, topic: str) -> dict[str, Any] | None:
    return ask.call(topic)


@task()
async def ask_async() -> dict[str, Any] | None:
    await asyncio.sleep(0)
    return seen_now()


def received(gw: FakeGateway, index: int = -1) -> tuple[str | None, ...]:
    return tuple(gw.requests[index].headers.get(name) for name in NAMES)


# --- enqueueing -------------------------------------------------------------------------------


def test_enqueued_task_carries_the_bound_context_and_runs_with_it(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(
        request_id=REQUEST_ID, tenant="acme", team="search", user="u-42", session="chat-7"
    ) as bound:
        result = ask.enqueue("summary")
        assert current_context() is bound

    assert result.kwargs[CARRIER_KWARG] == {
        "aigw_request_id": REQUEST_ID,
        "aigw_tenant": "acme",
        "aigw_team": "search",
        "aigw_user": "u-42",
        "aigw_session": "chat-7",
    }
    assert received(fake_gateway) == (REQUEST_ID, "acme", "search", "u-42", "chat-7")
    assert result.return_value == {"request_id": REQUEST_ID, "tenant": "acme", "team": "search"}


def test_tasks_enqueued_outside_any_context_get_their_own_fresh_request_id_and_no_tenant(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    first, second = ask.enqueue(), ask.enqueue()

    ids = [result.kwargs[CARRIER_KWARG]["aigw_request_id"] for result in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)
    assert ids[0] != ids[1]
    assert [received(fake_gateway, i) for i in range(2)] == [
        (ids[0], None, None, None, None),
        (ids[1], None, None, None, None),
    ]
    assert current_context() is None


def test_a_carrier_passed_by_the_caller_wins(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        ask.enqueue(**{CARRIER_KWARG: {"aigw_request_id": "explicit-1"}})

    assert received(fake_gateway) == ("explicit-1", None, None, None, None)


async def test_aenqueue_carries_the_bound_context(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        result = await ask.aenqueue("summary")

    assert result.kwargs[CARRIER_KWARG]["aigw_tenant"] == "acme"
    assert received(fake_gateway)[:2] == (REQUEST_ID, "acme")


def test_using_keeps_a_correlation_task() -> None:
    assert isinstance(ask.using(priority=5), CorrelationTask)


# --- where the task runs --------------------------------------------------------------------


def test_worker_run_binds_the_carried_context_and_resets_it_afterwards(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    carrier = {"aigw_request_id": REQUEST_ID, "aigw_tenant": "acme", "aigw_team": "search"}

    inside = ask.call("summary", **{CARRIER_KWARG: carrier})

    assert inside == {"request_id": REQUEST_ID, "tenant": "acme", "team": "search"}
    assert received(fake_gateway)[:3] == (REQUEST_ID, "acme", "search")
    assert current_context() is None


def test_failed_task_leaves_nothing_bound() -> None:
    with pytest.raises(RuntimeError, match="on purpose"):
        fail.call(**{CARRIER_KWARG: {"aigw_request_id": REQUEST_ID, "aigw_tenant": "acme"}})

    assert current_context() is None


def test_task_that_takes_the_task_context_runs_bound(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        result = ask_with_context.enqueue("summary")

    assert result.return_value == {"request_id": REQUEST_ID, "tenant": "acme", "team": None}


def test_async_task_runs_with_the_carried_context() -> None:
    inside = ask_async.call(**{CARRIER_KWARG: {"aigw_request_id": REQUEST_ID}})

    assert inside == {"request_id": REQUEST_ID, "tenant": None, "team": None}
    assert current_context() is None


async def test_acall_binds_the_carried_context() -> None:
    inside = await ask_async.acall(**{CARRIER_KWARG: {"aigw_request_id": REQUEST_ID}})

    assert inside == {"request_id": REQUEST_ID, "tenant": None, "team": None}
    assert current_context() is None


GARBAGE = [
    pytest.param("aigw_request_id=web-1", id="a string, not a dict"),
    pytest.param(12345, id="a number"),
    pytest.param([REQUEST_ID, "acme"], id="a list"),
    pytest.param({"aigw_request_id": 12345, "aigw_tenant": ["acme"]}, id="wrong types"),
    pytest.param({"aigw_request_id": "r" * 10240, "aigw_tenant": "t" * 10240}, id="10 KiB values"),
    pytest.param(
        {"aigw_request_id": "web\r\nX-Forged: 1", "aigw_team": "ml\x00\x1b[31m"},
        id="control characters",
    ),
]


@pytest.mark.parametrize("carrier", GARBAGE)
def test_garbage_carrier_runs_the_task_without_that_context_and_logs_one_warning(
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    carrier: Any,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        inside = ask.call("summary", **{CARRIER_KWARG: carrier})

    assert inside is not None
    assert re.fullmatch(r"[0-9a-f]{32}", inside["request_id"])
    assert received(fake_gateway) == (inside["request_id"], None, None, None, None)
    [warning] = [r for r in caplog.records if r.name == "aigw_middleware"]
    assert warning.levelno == logging.WARNING
    assert "acme" not in warning.getMessage()
