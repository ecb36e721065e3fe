"""RQ end to end: a Django view enqueues jobs on a real redis-server; two real ``rq worker``
processes (``--job-class aigw_middleware.rq.CorrelationJob``, as the docs show) run them; the
FakeGateway receives, per job, the values of the web request that enqueued it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path
from redis import Redis
from rq import Retry, Worker
from rq.job import Job, JobStatus

from aigw_middleware import bind_context
from aigw_middleware.rq import CorrelationQueue
from aigw_middleware.testing import FakeGateway
from tests.e2e import rq_jobs
from tests.e2e.servers import VENV_BIN
from tests.e2e.workers import (
    WorkerProcesses,
    load,
    mismatches,
    received_by_label,
    redis_server,
    resolve_from_query,
    send_in_parallel,
    wait_for_gateway_calls,
)

pytestmark = pytest.mark.e2e

QUEUE = "aigw-e2e"
WORKERS = 2
TASKS = 200
TIMEOUT = 40.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def connection(redis_url: str) -> Iterator[Redis]:
    with Redis.from_url(redis_url) as redis:
        yield redis


@pytest.fixture(scope="module")
def queue(connection: Redis) -> CorrelationQueue:
    return CorrelationQueue(QUEUE, connection=connection)


@pytest.fixture(scope="module")
def workers(redis_url: str, connection: Redis, gateway: FakeGateway) -> Iterator[WorkerProcesses]:
    """Two ``rq worker`` processes: one forks a work horse per job as RQ does by default; the
    other (``SimpleWorker``) runs every job in its own process, one after the other, so a job
    that left its context bound would hand it to the next."""
    processes = WorkerProcesses()
    for n, worker_class in enumerate(("rq.Worker", "rq.SimpleWorker")):
        argv = [
            str(VENV_BIN / "rq"), "worker",
            "--url", redis_url,
            "--job-class", "aigw_middleware.rq.CorrelationJob",
            "--worker-class", worker_class,
            "--name", f"aigw-e2e-{n}",
            "--logging_level", "WARNING",
            "--disable-job-desc-logging",
            QUEUE,
        ]  # fmt: skip
        processes.start(argv, {"AIGW_BASE_URL": gateway.base_url})
    try:
        processes.wait_until(
            lambda: Worker.count(connection=connection) == WORKERS, "the rq workers did not start"
        )
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def fresh_gateway(gateway: FakeGateway) -> FakeGateway:
    gateway.clear()
    return gateway


def finished(job: Job, timeout: float = TIMEOUT) -> Job:
    deadline = time.monotonic() + timeout
    while job.get_status(refresh=True) not in (JobStatus.FINISHED, JobStatus.FAILED):
        if time.monotonic() > deadline:
            pytest.fail(f"job {job.id} did not finish within {timeout} s")
        time.sleep(0.05)
    return job


# --- the web app ------------------------------------------------------------------------------

_queue: CorrelationQueue | None = None


def summary(request: HttpRequest) -> JsonResponse:
    assert _queue is not None
    job = _queue.enqueue(rq_jobs.summarize, request.GET["label"])
    return JsonResponse({"job_id": job.id})


urlpatterns = [path("summary/", summary)]


@pytest.fixture
def django_app(settings: Any, queue: CorrelationQueue, gateway: FakeGateway) -> Iterator[None]:
    global _queue
    settings.ROOT_URLCONF = __name__
    settings.AIGW = {"BASE_URL": gateway.base_url, "TENANT_RESOLVER": resolve_from_query}
    _queue = queue
    yield
    _queue = None


# --- what must hold ---------------------------------------------------------------------------


@pytest.mark.usefixtures("workers", "django_app")
def test_parallel_requests_jobs_reach_the_gateway_with_their_own_requests_values(
    fresh_gateway: FakeGateway, connection: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = load(TASKS, "rq")
    job_ids: dict[str, str] = {}

    def send(request: Any) -> None:
        response = Client().get(f"/summary/?{request.query}", headers=request.headers)
        assert response.status_code == 200
        job_ids[request.label] = response.json()["job_id"]

    started = time.monotonic()
    send_in_parallel(send, sent, threads=8)
    wait_for_gateway_calls(fresh_gateway, TASKS, TIMEOUT)
    elapsed = time.monotonic() - started

    wrong = mismatches(sent, fresh_gateway)
    jobs = Job.fetch_many(list(job_ids.values()), connection=connection)
    worker_names = {job.worker_name for job in jobs if job is not None and job.worker_name}
    with capsys.disabled():
        print(
            f"\nrq: {TASKS} jobs from parallel requests across {len(worker_names)} worker "
            f"processes, {len(wrong)} mismatches, {elapsed:.1f} s"
        )
    assert wrong == []
    assert len(fresh_gateway.requests) == TASKS
    assert worker_names == {f"aigw-e2e-{n}" for n in range(WORKERS)}


@pytest.mark.usefixtures("workers")
def test_jobs_enqueued_outside_any_context_get_their_own_fresh_request_id_and_no_tenant(
    fresh_gateway: FakeGateway, queue: CorrelationQueue
) -> None:
    with bind_context(request_id="web-before", tenant="acme", team="search"):
        finished(queue.enqueue(rq_jobs.summarize, "inside"))
    first = finished(queue.enqueue(rq_jobs.summarize, "outside-1"))
    second = finished(queue.enqueue(rq_jobs.summarize, "outside-2"))

    found = received_by_label(fresh_gateway)
    assert found["outside-1"] == (first.return_value(), None, None, None, None)
    assert found["outside-2"] == (second.return_value(), None, None, None, None)
    assert len({first.return_value(), second.return_value(), "web-before"}) == 3


@pytest.mark.usefixtures("workers")
def test_retried_job_keeps_the_request_id_and_tenant_of_its_enqueuer(
    fresh_gateway: FakeGateway, queue: CorrelationQueue, redis_url: str
) -> None:
    with bind_context(request_id="web-retry-1", tenant="acme", team="search"):
        job = queue.enqueue(
            rq_jobs.fail_once, "retried", "aigw-e2e-marker", redis_url, retry=Retry(max=1)
        )

    deadline = time.monotonic() + TIMEOUT
    while job.get_status(refresh=True) != JobStatus.FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.get_status() == JobStatus.FINISHED
    runs = [r.headers for r in fresh_gateway.requests]
    assert len(runs) == 2
    assert {(h["x-ai-request-id"], h["x-ai-tenant"], h["x-ai-team"]) for h in runs} == {
        ("web-retry-1", "acme", "search")
    }


GARBAGE: dict[str, dict[str, Any]] = {
    "wrong-types": {"aigw_request_id": 12345, "aigw_tenant": ["acme"], "aigw_team": {"a": 1}},
    "10-KiB": {"aigw_request_id": "r" * 10240, "aigw_tenant": "t" * 10240},
    "control-chars": {"aigw_request_id": "web\r\nX-Forged: 1", "aigw_session": "s\x00\x1b[2J"},
}


WARNING = "aigw: ignored correlation values in a message"


def test_job_with_garbage_in_its_meta_runs_without_that_context_and_logs_one_warning(
    fresh_gateway: FakeGateway, queue: CorrelationQueue, workers: WorkerProcesses
) -> None:
    warned_before = workers.output().count(WARNING)
    jobs = {
        name: queue.enqueue(rq_jobs.summarize, name, meta=meta) for name, meta in GARBAGE.items()
    }

    for job in jobs.values():
        assert finished(job).get_status() == JobStatus.FINISHED
    found = received_by_label(fresh_gateway)
    for name, job in jobs.items():
        assert found[name] == (job.return_value(), None, None, None, None)
        assert len(job.return_value()) == 32
    assert workers.output().count(WARNING) - warned_before == len(GARBAGE)
