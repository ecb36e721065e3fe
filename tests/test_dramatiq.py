"""Specification of aigw_middleware.dramatiq: the context travels in the message options.

Actors run on Dramatiq's in-memory ``StubBroker`` with a real ``dramatiq.Worker`` (threads) in
this process; the end-to-end module runs a ``dramatiq`` worker process on a real Redis broker.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, AsyncIO, Retries, SkipMessage

from aigw_middleware import bind_context, current_context, get_client
from aigw_middleware.config import GatewayConfig
from aigw_middleware.dramatiq import CorrelationMiddleware
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.testing import FakeGateway

REQUEST_ID = "web-req-0001"
KEYS = ("aigw_request_id", "aigw_tenant", "aigw_team", "aigw_user", "aigw_session")
actor_log = logging.getLogger("tests.dramatiq.actor")


class LeftBound(dramatiq.Middleware):  # type: ignore[misc]
    """Records what is bound in the worker thread before anything else runs for a message:
    whatever an earlier message left bound there."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def before_process_message(self, broker: Any, message: Any) -> None:
        context = current_context()
        if context is not None:
            self.found.append(context.request_id)


left_bound = LeftBound()
broker = StubBroker(
    middleware=[left_bound, AgeLimit(), Retries(min_backoff=1, max_backoff=1), AsyncIO()]
)
broker.add_middleware(CorrelationMiddleware())
seen: list[dict[str, Any] | None] = []


def ask_gateway() -> None:
    actor_log.info("asking the gateway")
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    context = current_context()
    seen.append(None if context is None else {"request_id": context.request_id})


@dramatiq.actor(broker=broker, max_retries=0)
def ask() -> None:
    ask_gateway()


@dramatiq.actor(broker=broker, max_retries=0)
async def ask_async() -> None:
    # An async actor runs on the AsyncIO middleware's event loop, in another thread.
    await asyncio.sleep(0)
    ask_gateway()


@dramatiq.actor(broker=broker, max_retries=0)
def fail() -> None:
    ask_gateway()
    raise RuntimeError("actor failed on purpose")


_runs: dict[str, int] = {}


@dramatiq.actor(broker=broker, max_retries=2)
def fail_twice(marker: str) -> None:
    ask_gateway()
    _runs[marker] = _runs.get(marker, 0) + 1
    if _runs[marker] <= 2:
        raise RuntimeError("fails on the first two runs")


class SkipFirst(dramatiq.Middleware):  # type: ignore[misc]
    """Skips the first message it sees, after the correlation middleware has bound its context."""

    def __init__(self) -> None:
        self.skipped = 0

    def before_process_message(self, broker: Any, message: Any) -> None:
        if not self.skipped:
            self.skipped += 1
            raise SkipMessage()


@pytest.fixture
def worker() -> Iterator[dramatiq.Worker]:
    broker.flush_all()
    seen.clear()
    left_bound.found.clear()
    running = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    running.start()
    yield running
    running.stop()
    assert left_bound.found == [], "a message left its context bound in a worker thread"


def run_all() -> None:
    broker.join(ask.queue_name, fail_fast=False, timeout=10_000)


def received(gw: FakeGateway, index: int = -1) -> tuple[str | None, ...]:
    headers = gw.requests[index].headers
    names = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")
    return tuple(headers.get(name) for name in names)


# --- sending ----------------------------------------------------------------------------------


def test_sent_message_options_carry_the_bound_request_id_tenant_team_user_and_session() -> None:
    broker.flush_all()
    with bind_context(
        request_id=REQUEST_ID, tenant="acme", team="search", user="u-42", session="chat-7"
    ):
        message = ask.send()

    assert [message.options[key] for key in KEYS] == [
        REQUEST_ID,
        "acme",
        "search",
        "u-42",
        "chat-7",
    ]


def test_messages_sent_outside_any_context_get_a_fresh_request_id_each_and_no_tenant() -> None:
    broker.flush_all()
    first, second = ask.send(), ask.send()

    assert re.fullmatch(r"[0-9a-f]{32}", first.options["aigw_request_id"])
    assert first.options["aigw_request_id"] != second.options["aigw_request_id"]
    assert not {"aigw_tenant", "aigw_team"} & first.options.keys()


def test_options_the_sender_sets_win() -> None:
    broker.flush_all()
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        message = ask.send_with_options(aigw_tenant="explicit")

    assert (message.options["aigw_request_id"], message.options["aigw_tenant"]) == (
        REQUEST_ID,
        "explicit",
    )


# --- in the worker ----------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_actor_calls_the_gateway_with_the_senders_request_id_tenant_team_user_and_session(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(
        request_id=REQUEST_ID, tenant="acme", team="search", user="u-42", session="chat-7"
    ):
        ask.send()
    run_all()

    assert received(fake_gateway) == (REQUEST_ID, "acme", "search", "u-42", "chat-7")


@pytest.mark.usefixtures("worker")
def test_async_actor_runs_with_the_senders_context(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        ask_async.send()
    run_all()

    assert received(fake_gateway)[:2] == (REQUEST_ID, "acme")


@pytest.mark.usefixtures("worker")
def test_messages_sent_outside_any_context_run_with_their_own_request_ids_and_no_tenant(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    first, second = ask.send(), ask.send()
    run_all()

    found = {received(fake_gateway, i) for i in range(2)}
    assert found == {
        (first.options["aigw_request_id"], None, None, None, None),
        (second.options["aigw_request_id"], None, None, None, None),
    }


@pytest.mark.usefixtures("worker")
def test_log_record_emitted_inside_an_actor_has_the_senders_request_id(
    caplog: pytest.LogCaptureFixture, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.INFO, logger=actor_log.name):
        with bind_context(request_id=REQUEST_ID, tenant="acme"):
            ask.send()
        run_all()

    [record] = [r for r in caplog.records if r.name == actor_log.name]
    assert (record.request_id, record.tenant) == (REQUEST_ID, "acme")  # type: ignore[attr-defined]


@pytest.mark.usefixtures("worker")
def test_failed_actor_keeps_its_request_id_on_dramatiqs_error_record_and_leaves_the_thread_clean(
    caplog: pytest.LogCaptureFixture, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        fail.send()
    run_all()
    for _ in range(4):  # more messages than worker threads: each thread runs one after the failure
        ask.send()
    run_all()

    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert [r.request_id for r in errors] == [REQUEST_ID]  # type: ignore[attr-defined]
    assert left_bound.found == []
    # Two worker threads: the four calls may reach the gateway in any order.
    after = {received(fake_gateway, i)[:2] for i in range(1, 5)}
    assert after == {(run["request_id"], None) for run in seen[1:] if run is not None}
    assert len(after) == 4


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("bound", [True, False], ids=["sent in a context", "outside"])
def test_retried_message_keeps_its_request_id_and_tenant_on_every_run(
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    request: pytest.FixtureRequest,
    bound: bool,
) -> None:
    if bound:
        with bind_context(request_id=REQUEST_ID, tenant="acme"):
            message = fail_twice.send(request.node.name)
    else:
        message = fail_twice.send(request.node.name)
    run_all()

    assert len(fake_gateway.requests) == 3
    assert {received(fake_gateway, i) for i in range(3)} == {
        (message.options["aigw_request_id"], "acme" if bound else None, None, None, None)
    }


def test_skipped_message_leaves_nothing_bound_in_the_worker_thread() -> None:
    found = LeftBound()
    skipping = StubBroker(middleware=[found])
    skipping.add_middleware(CorrelationMiddleware())
    skipping.add_middleware(SkipFirst())
    noop = dramatiq.actor(broker=skipping)(_noop)
    running = dramatiq.Worker(skipping, worker_timeout=50, worker_threads=1)
    running.start()
    try:
        with bind_context(request_id=REQUEST_ID):
            noop.send()
            noop.send()
        skipping.join(noop.queue_name, fail_fast=False, timeout=10_000)
    finally:
        running.stop()
    assert found.found == []


def _noop() -> None:
    pass


GARBAGE = [
    pytest.param({"aigw_request_id": 12345, "aigw_tenant": ["acme"]}, id="wrong types"),
    pytest.param({"aigw_request_id": "r" * 10240, "aigw_tenant": "t" * 10240}, id="10 KiB values"),
    pytest.param(
        {"aigw_request_id": "web\r\nX-Forged: 1", "aigw_team": "ml\x00\x1b[31m"},
        id="control characters",
    ),
    pytest.param({"aigw_request_id": {"id": REQUEST_ID}, "aigw_session": 1.5}, id="nested dict"),
]


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("options", GARBAGE)
def test_garbage_options_run_the_actor_without_that_context_and_log_one_warning(
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    options: dict[str, Any],
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        ask.send_with_options(**options)
        run_all()

    request_id, *rest = received(fake_gateway)
    assert request_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert rest == [None, None, None, None]
    assert broker.dead_letters == []
    [warning] = [r for r in caplog.records if r.name == "aigw_middleware"]
    assert warning.levelno == logging.WARNING
    assert "acme" not in warning.getMessage()
