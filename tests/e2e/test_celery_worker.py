"""Celery end to end: Django and Flask views enqueue tasks through a real Redis broker, and a real
worker's gateway calls and log records carry the web request's ID, tenant and team.

The test starts its own ``redis-server`` on a free loopback port (scripts/setup.d/20-redis.sh
installs it), a Celery worker in a thread of this process with one pool thread, and once a
``celery worker`` process set up as docs/integrations/celery.md shows.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import after_setup_logger, after_setup_task_logger
from celery.utils.log import get_task_logger
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path
from flask import Flask

from aigw_middleware import bind_context, current_context, get_client
from aigw_middleware.celery import install
from aigw_middleware.config import GatewayConfig
from aigw_middleware.flask import AIGateway
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ROOT, VENV_BIN, free_port
from tests.e2e.workers import redis_server

pytestmark = pytest.mark.e2e

TIMEOUT = 15.0
POLL = 0.02  # seconds between result checks; Celery polls every 0.5 s by default

app = Celery("e2e_celery", set_as_current=False)
app.conf.update(
    broker_connection_retry_on_startup=True,
    # The worker would otherwise replace the root logger's handlers, pytest's among them.
    worker_hijack_root_logger=False,
)
install(app)

task_log = logging.getLogger("tests.e2e.celery.task")


@app.task(name="e2e.summarize")
def summarize() -> dict[str, Any]:
    """What a view hands to the worker: one gateway call, one log line."""
    task_log.info("summarizing")
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "summarize"}]
    )
    context = current_context()
    assert context is not None
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


@app.task(name="e2e.summarize_in_parts")
def summarize_in_parts() -> str:
    """Enqueues the real work as a second task."""
    return str(summarize.delay().id)


def wait(task_id: str) -> Any:
    return app.AsyncResult(task_id).get(timeout=TIMEOUT, interval=POLL)


def received(gw: FakeGateway, index: int = -1) -> tuple[str | None, str | None, str | None]:
    headers = gw.requests[index].headers
    return (headers.get("x-ai-request-id"), headers.get("x-ai-tenant"), headers.get("x-ai-team"))


# --- Redis and the worker -----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def worker(redis_url: str) -> Iterator[None]:
    app.conf.update(
        broker_url=f"{redis_url}/0",
        result_backend=f"{redis_url}/1",
        # Results live as long as this redis-server anyway. Without an expiry Celery stores them
        # with SET rather than SETEX, which redis-py 8 deprecates (a warning, so an error here).
        result_expires=None,
    )
    root = logging.getLogger()
    level, handlers = root.level, set(root.handlers)
    with start_worker(
        app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=15
    ):
        # start_worker sets up logging as a worker process would: the root logger at ERROR with a
        # stderr handler. Put back the test session's, so later tests log as before.
        root.setLevel(level)
        for handler in set(root.handlers) - handlers:
            root.removeHandler(handler)
        yield


# --- the web apps -------------------------------------------------------------------------


def tenant_from_query(request: Any) -> tuple[str | None, str | None]:
    """Stands in for a resolver that reads the authenticated user."""
    query = request.GET if isinstance(request, HttpRequest) else request.args
    return query.get("tenant"), query.get("team")


def django_summary(request: HttpRequest) -> JsonResponse:
    task = summarize_in_parts if request.GET.get("parts") else summarize
    return JsonResponse({"task_id": task.delay().id})


urlpatterns = [path("summary/", django_summary)]


@pytest.fixture
def django_client(settings: Any, fake_gateway: FakeGateway) -> Client:
    settings.ROOT_URLCONF = __name__
    settings.AIGW = {"BASE_URL": fake_gateway.base_url, "TENANT_RESOLVER": tenant_from_query}
    return Client()


@pytest.fixture
def flask_client(shared_config: GatewayConfig) -> Any:
    flask_app = Flask(__name__)
    flask_app.config["AIGW_BASE_URL"] = shared_config.base_url
    AIGateway(flask_app, tenant_resolver=tenant_from_query)

    @flask_app.get("/summary")
    def summary() -> dict[str, str]:
        return {"task_id": str(summarize.delay().id)}

    return flask_app.test_client()


# --- what must hold -----------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_django_view_task_calls_the_gateway_with_the_web_request_id_tenant_and_team(
    django_client: Client, fake_gateway: FakeGateway
) -> None:
    response = django_client.get(
        "/summary/?tenant=acme&team=search", headers={"X-AI-Request-Id": "web-django-1"}
    )

    assert response.status_code == 200
    assert wait(response.json()["task_id"])["request_id"] == "web-django-1"
    assert received(fake_gateway) == ("web-django-1", "acme", "search")


@pytest.mark.usefixtures("worker")
def test_django_view_without_incoming_id_hands_its_generated_id_to_the_task(
    django_client: Client, fake_gateway: FakeGateway
) -> None:
    response = django_client.get("/summary/?tenant=acme")

    wait(response.json()["task_id"])
    assert received(fake_gateway) == (response.headers["X-AI-Request-Id"], "acme", None)


@pytest.mark.usefixtures("worker")
def test_flask_view_task_calls_the_gateway_with_the_web_request_id_tenant_and_team(
    flask_client: Any, fake_gateway: FakeGateway
) -> None:
    response = flask_client.get(
        "/summary?tenant=globex&team=ops", headers={"X-AI-Request-Id": "web-flask-1"}
    )

    assert response.status_code == 200
    assert wait(response.json["task_id"])["request_id"] == "web-flask-1"
    assert received(fake_gateway) == ("web-flask-1", "globex", "ops")


@pytest.mark.usefixtures("worker")
def test_task_published_with_no_context_gets_a_fresh_request_id_and_no_tenant(
    fake_gateway: FakeGateway, shared_config: GatewayConfig
) -> None:
    seen = summarize.delay().get(timeout=TIMEOUT, interval=POLL)

    assert seen["tenant"] is None
    assert received(fake_gateway) == (seen["request_id"], None, None)
    assert len(seen["request_id"]) == 32


@pytest.mark.usefixtures("worker")
def test_next_task_on_the_same_worker_does_not_inherit_the_previous_tenant(
    django_client: Client, fake_gateway: FakeGateway
) -> None:
    response = django_client.get(
        "/summary/?tenant=acme&team=search", headers={"X-AI-Request-Id": "web-django-2"}
    )
    wait(response.json()["task_id"])
    summarize.delay().get(timeout=TIMEOUT, interval=POLL)

    request_id, tenant, team = received(fake_gateway, 1)
    assert (tenant, team) == (None, None)
    assert request_id != "web-django-2"


@pytest.mark.usefixtures("worker")
def test_task_enqueued_from_inside_a_task_carries_the_web_request_id(
    django_client: Client, fake_gateway: FakeGateway
) -> None:
    response = django_client.get(
        "/summary/?parts=1&tenant=acme", headers={"X-AI-Request-Id": "web-django-3"}
    )

    child_id = wait(response.json()["task_id"])
    assert wait(child_id)["request_id"] == "web-django-3"
    assert received(fake_gateway) == ("web-django-3", "acme", None)


@pytest.mark.usefixtures("worker")
def test_log_record_emitted_inside_the_task_has_the_web_request_id(
    django_client: Client, fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(CorrelationFilter())
    with caplog.at_level(logging.INFO, logger=task_log.name):
        response = django_client.get("/summary/", headers={"X-AI-Request-Id": "web-django-4"})
        wait(response.json()["task_id"])

    [record] = [r for r in caplog.records if r.name == task_log.name]
    assert record.request_id == "web-django-4"  # type: ignore[attr-defined]


# --- a worker process, with the logging setup of docs/integrations/celery.md -------------------------

BROKER_ENV = "AIGW_TEST_CELERY_REDIS"
LOG_FIELDS = "[%(request_id)s %(tenant)s/%(team)s]"

process_app = Celery("e2e_celery_process", set_as_current=False)
process_app.conf.update(
    broker_url=f"{os.environ.get(BROKER_ENV, 'memory://')}/0",
    result_backend=f"{os.environ.get(BROKER_ENV, 'cache+memory://')}/1",
    result_expires=None,
    broker_connection_retry_on_startup=True,
    # Its own queue: the in-thread worker of the tests above listens on the same broker.
    task_default_queue="e2e-process",
    worker_log_format=f"[%(levelname)s/%(processName)s] {LOG_FIELDS} %(message)s",
    worker_task_log_format=f"[%(levelname)s/%(processName)s] {LOG_FIELDS} %(task_name)s: %(message)s",
)
install(process_app)


@after_setup_logger.connect
@after_setup_task_logger.connect
def add_correlation_fields(logger: logging.Logger, **kwargs: Any) -> None:
    for handler in logger.handlers:
        handler.addFilter(CorrelationFilter())


@process_app.task(name="e2e.process.summarize")
def process_summarize() -> str:
    get_task_logger(__name__).info("summarizing in a worker process")
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "summarize"}]
    )
    return "done"


@pytest.fixture
def worker_process(redis_url: str, fake_gateway: FakeGateway) -> Iterator[Path]:
    """A ``celery worker`` process (threads pool, one thread); yields the file it logs to."""
    argv = [
        str(VENV_BIN / "celery"),
        "--app", f"{__name__}:process_app",
        "worker", "--pool", "threads", "--concurrency", "1", "--loglevel", "INFO",
        "--hostname", f"e2e-{free_port()}@127.0.0.1",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    env = {**os.environ, BROKER_ENV: redis_url, "AIGW_BASE_URL": fake_gateway.base_url}
    with tempfile.NamedTemporaryFile(prefix="aigw-celery-", suffix=".log") as log:
        output = Path(log.name)
        worker = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30.0
            while "ready." not in output.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Celery worker did not start:\n{output.read_text()}")
                time.sleep(0.1)
            yield output
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=5)


def test_worker_process_gateway_call_and_task_log_line_carry_the_publishers_request_id(
    redis_url: str, worker_process: Path, fake_gateway: FakeGateway
) -> None:
    process_app.conf.update(broker_url=f"{redis_url}/0", result_backend=f"{redis_url}/1")
    with bind_context(request_id="web-process-1", tenant="acme", team="search"):
        result = process_summarize.delay()

    assert result.get(timeout=TIMEOUT, interval=POLL) == "done"
    assert received(fake_gateway) == ("web-process-1", "acme", "search")
    task_lines = [
        line
        for line in worker_process.read_text().splitlines()
        if "summarizing in a worker process" in line
    ]
    assert task_lines == [
        "[INFO/MainProcess] [web-process-1 acme/search] e2e.process.summarize: "
        "summarizing in a worker process"
    ]
