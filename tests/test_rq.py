"""Specification of aigw_middleware.rq: the context travels in job.meta to the worker.

Jobs run in this process on an in-memory Redis (fakeredis) with RQ's ``SimpleWorker``; the
end-to-end module runs ``rq worker`` processes on a real redis-server behind a Django view.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from rq import Queue, Retry, SimpleWorker
from rq.job import Job, JobStatus

from aigw_middleware import bind_context, current_context, get_client
from aigw_middleware.config import GatewayConfig
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.rq import CorrelationJob, CorrelationQueue
from aigw_middleware.testing import FakeGateway

REQUEST_ID = "web-req-0001"
KEYS = ("aigw_request_id", "aigw_tenant", "aigw_team", "aigw_user", "aigw_session")
job_log = logging.getLogger("tests.rq.job")


# --- the jobs (module level: RQ imports them by name) --------------------------------------


def ask() -> dict[str, Any]:
    """One gateway call and one log line; what the job saw bound."""
    job_log.info("asking the gateway")
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    context = current_context()
    assert context is not None
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


def fail() -> None:
    ask()
    raise RuntimeError("job failed on purpose")


def fail_on_first_run(marker: str) -> str:
    """Fails until ``marker`` was seen once: a job that succeeds on its retry."""
    ask()
    if not _failed_once.get(marker):
        _failed_once[marker] = True
        raise RuntimeError("first run fails")
    return "done"


_failed_once: dict[str, bool] = {}


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[fakeredis.FakeStrictRedis]:
    connection = fakeredis.FakeStrictRedis()
    yield connection
    connection.flushall()


@pytest.fixture
def queue(redis: fakeredis.FakeStrictRedis) -> CorrelationQueue:
    return CorrelationQueue("aigw-test", connection=redis)


def run_jobs(queue: Queue) -> None:
    """Run every queued job in this process, as ``rq worker --burst --job-class ...`` would."""
    worker = SimpleWorker([queue], connection=queue.connection, job_class=CorrelationJob)
    worker.work(burst=True, logging_level="WARNING", with_scheduler=False)


def received(gw: FakeGateway, index: int = -1) -> tuple[str | None, ...]:
    headers = gw.requests[index].headers
    names = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")
    return tuple(headers.get(name) for name in names)


# --- enqueueing -----------------------------------------------------------------------------


def test_enqueued_job_meta_carries_the_bound_request_id_tenant_team_user_and_session(
    queue: CorrelationQueue,
) -> None:
    with bind_context(
        request_id=REQUEST_ID, tenant="acme", team="search", user="u-42", session="chat-7"
    ):
        job = queue.enqueue(ask)

    stored = Job.fetch(job.id, connection=queue.connection)
    assert [stored.meta[key] for key in KEYS] == [REQUEST_ID, "acme", "search", "u-42", "chat-7"]


def test_job_enqueued_outside_any_context_gets_a_fresh_request_id_of_its_own_and_no_tenant(
    queue: CorrelationQueue,
) -> None:
    first, second = queue.enqueue(ask), queue.enqueue(ask)

    assert re.fullmatch(r"[0-9a-f]{32}", first.meta["aigw_request_id"])
    assert first.meta["aigw_request_id"] != second.meta["aigw_request_id"]
    assert not {"aigw_tenant", "aigw_team"} & first.meta.keys()


def test_meta_passed_to_enqueue_wins_and_is_kept(queue: CorrelationQueue) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        job = queue.enqueue(ask, meta={"aigw_tenant": "explicit", "progress": 0})

    assert job.meta == {"aigw_tenant": "explicit", "progress": 0, "aigw_request_id": REQUEST_ID}


def test_every_way_to_enqueue_carries_the_context(queue: CorrelationQueue) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        jobs = [
            queue.enqueue_call(ask),
            *queue.enqueue_many([Queue.prepare_data(ask)]),
            queue.enqueue_in(__import__("datetime").timedelta(seconds=60), ask),
        ]

    assert [job.meta["aigw_request_id"] for job in jobs] == [REQUEST_ID] * 3
    assert [job.meta["aigw_tenant"] for job in jobs] == ["acme"] * 3


# --- in the worker --------------------------------------------------------------------------


def test_worker_job_calls_the_gateway_with_the_enqueuers_request_id_tenant_team_user_session(
    queue: CorrelationQueue, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(
        request_id=REQUEST_ID, tenant="acme", team="search", user="u-42", session="chat-7"
    ):
        job = queue.enqueue(ask)
    run_jobs(queue)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert received(fake_gateway) == (REQUEST_ID, "acme", "search", "u-42", "chat-7")


def test_jobs_enqueued_outside_any_context_run_with_their_own_request_ids_and_no_tenant(
    queue: CorrelationQueue, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search"):
        queue.enqueue(ask)
    first, second = queue.enqueue(ask), queue.enqueue(ask)
    run_jobs(queue)

    assert received(fake_gateway, 1) == (first.meta["aigw_request_id"], None, None, None, None)
    assert received(fake_gateway, 2) == (second.meta["aigw_request_id"], None, None, None, None)
    assert first.meta["aigw_request_id"] != second.meta["aigw_request_id"]


def test_job_enqueued_on_a_plain_queue_runs_with_a_fresh_request_id(
    redis: fakeredis.FakeStrictRedis, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    plain = Queue("aigw-plain", connection=redis)
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        plain.enqueue(ask)
    run_jobs(plain)

    request_id, tenant, *_ = received(fake_gateway)
    assert request_id is not None
    assert request_id != REQUEST_ID
    assert tenant is None


def test_log_record_emitted_inside_a_job_has_the_enqueuers_request_id(
    queue: CorrelationQueue,
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        queue.enqueue(ask)
    with caplog.at_level(logging.INFO, logger=job_log.name):
        run_jobs(queue)

    [record] = [r for r in caplog.records if r.name == job_log.name]
    assert (record.request_id, record.tenant) == (REQUEST_ID, "acme")  # type: ignore[attr-defined]


def test_failed_job_leaves_nothing_bound_for_the_next_job(
    queue: CorrelationQueue, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    with bind_context(request_id=REQUEST_ID, tenant="acme"):
        failed = queue.enqueue(fail)
    after = queue.enqueue(ask)
    run_jobs(queue)

    assert failed.get_status(refresh=True) == JobStatus.FAILED
    assert received(fake_gateway, 0)[:2] == (REQUEST_ID, "acme")
    assert received(fake_gateway, 1)[:2] == (after.meta["aigw_request_id"], None)
    assert current_context() is None


@pytest.mark.parametrize("bound", [True, False], ids=["enqueued in a context", "outside"])
def test_retried_job_keeps_its_request_id_and_tenant_on_every_run(
    queue: CorrelationQueue,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    request: pytest.FixtureRequest,
    bound: bool,
) -> None:
    marker = request.node.name
    if bound:
        with bind_context(request_id=REQUEST_ID, tenant="acme"):
            job = queue.enqueue(fail_on_first_run, marker, retry=Retry(max=1))
    else:
        job = queue.enqueue(fail_on_first_run, marker, retry=Retry(max=1))
    run_jobs(queue)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert len(fake_gateway.requests) == 2
    assert received(fake_gateway, 0) == received(fake_gateway, 1)
    assert received(fake_gateway, 0)[0] == job.meta["aigw_request_id"]


def test_synchronous_queue_runs_the_job_in_the_callers_context(
    redis: fakeredis.FakeStrictRedis, fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    inline = CorrelationQueue("aigw-inline", connection=redis, is_async=False)
    with bind_context(request_id=REQUEST_ID, tenant="acme", team="search") as bound:
        job = inline.enqueue(ask)
        assert current_context() is bound

    assert job.return_value() == {"request_id": REQUEST_ID, "tenant": "acme", "team": "search"}


GARBAGE = [
    pytest.param({"aigw_request_id": 12345, "aigw_tenant": ["acme"]}, id="wrong types"),
    pytest.param({"aigw_request_id": "r" * 10240, "aigw_tenant": "t" * 10240}, id="10 KiB values"),
    pytest.param(
        {"aigw_request_id": "web\r\nX-Forged: 1", "aigw_team": "ml\x00\x1b[31m"},
        id="control characters",
    ),
    pytest.param({"aigw_request_id": {"id": REQUEST_ID}, "aigw_user": None}, id="nested dict"),
]


@pytest.mark.parametrize("meta", GARBAGE)
def test_garbage_in_meta_runs_the_job_without_that_context_and_logs_one_warning(
    redis: fakeredis.FakeStrictRedis,
    caplog: pytest.LogCaptureFixture,
    fake_gateway: FakeGateway,
    shared_config: GatewayConfig,
    meta: dict[str, Any],
) -> None:
    plain = Queue("aigw-garbage", connection=redis)
    job = plain.enqueue(ask, meta=meta)
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        run_jobs(plain)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    seen = job.return_value()
    assert re.fullmatch(r"[0-9a-f]{32}", seen["request_id"])
    assert received(fake_gateway) == (seen["request_id"], None, None, None, None)
    [warning] = [r for r in caplog.records if r.name == "aigw_middleware"]
    assert warning.levelno == logging.WARNING
    assert "acme" not in warning.getMessage()
    assert "\n" not in warning.getMessage()
