"""Dramatiq end to end: a Django view sends messages through a real Redis broker; a real
``dramatiq`` worker (two processes, two threads each) with ``CorrelationMiddleware`` on its
broker, as the docs show, runs them; the FakeGateway receives, per message, the values of the
web request that sent it.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from aigw_middleware import bind_context
from aigw_middleware.testing import FakeGateway
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

PROCESSES = 2
THREADS = 2
TASKS = 200
TIMEOUT = 40.0
WARNING = "aigw: ignored correlation values in a message"


@pytest.fixture(scope="module")
def actors() -> Iterator[ModuleType]:
    """The actors module on a fresh redis-server, imported as the worker processes import it."""
    with redis_server() as url:
        before = os.environ.get("DRAMATIQ_E2E_REDIS")
        os.environ["DRAMATIQ_E2E_REDIS"] = url
        try:
            module = importlib.import_module("tests.e2e.dramatiq_actors")
            yield module
            module.broker.close()
        finally:
            if before is None:
                del os.environ["DRAMATIQ_E2E_REDIS"]
            else:
                os.environ["DRAMATIQ_E2E_REDIS"] = before


@pytest.fixture(scope="module")
def workers(actors: ModuleType, gateway: FakeGateway) -> Iterator[WorkerProcesses]:
    processes = WorkerProcesses()
    argv = [
        str(VENV_BIN / "dramatiq"), "tests.e2e.dramatiq_actors:broker",
        "--processes", str(PROCESSES), "--threads", str(THREADS),
        "--queues", actors.QUEUE,
    ]  # fmt: skip
    processes.start(
        argv,
        {
            "AIGW_BASE_URL": gateway.base_url,
            "DRAMATIQ_E2E_REDIS": os.environ["DRAMATIQ_E2E_REDIS"],
        },
    )
    try:
        processes.wait_until(
            lambda: processes.output().count("is ready for action") >= PROCESSES,
            "the dramatiq worker processes did not start",
        )
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def fresh_gateway(gateway: FakeGateway) -> FakeGateway:
    gateway.clear()
    return gateway


# --- the web app ------------------------------------------------------------------------------

_actors: ModuleType | None = None


def summary(request: HttpRequest) -> JsonResponse:
    assert _actors is not None
    message = _actors.summarize.send(request.GET["label"])
    return JsonResponse({"message_id": message.message_id})


urlpatterns = [path("summary/", summary)]


@pytest.fixture
def django_app(settings: Any, actors: ModuleType, gateway: FakeGateway) -> Iterator[None]:
    global _actors
    settings.ROOT_URLCONF = __name__
    settings.AIGW = {"BASE_URL": gateway.base_url, "TENANT_RESOLVER": resolve_from_query}
    _actors = actors
    yield
    _actors = None


# --- what must hold ---------------------------------------------------------------------------


@pytest.mark.usefixtures("workers", "django_app")
def test_parallel_requests_messages_reach_the_gateway_with_their_own_requests_values(
    fresh_gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = load(TASKS, "dq")

    def send(request: Any) -> None:
        response = Client().get(f"/summary/?{request.query}", headers=request.headers)
        assert response.status_code == 200

    started = time.monotonic()
    send_in_parallel(send, sent, threads=8)
    wait_for_gateway_calls(fresh_gateway, TASKS, TIMEOUT)
    elapsed = time.monotonic() - started

    wrong = mismatches(sent, fresh_gateway)
    runners = {r.json["metadata"]["worker"] for r in fresh_gateway.requests}
    processes = {runner.split("/")[0] for runner in runners}
    with capsys.disabled():
        print(
            f"\ndramatiq: {TASKS} messages from parallel requests across {len(processes)} "
            f"worker processes ({len(runners)} threads), {len(wrong)} mismatches, {elapsed:.1f} s"
        )
    assert wrong == []
    assert len(fresh_gateway.requests) == TASKS
    assert len(processes) == PROCESSES


@pytest.mark.usefixtures("workers")
def test_messages_sent_outside_any_context_get_their_own_fresh_request_id_and_no_tenant(
    fresh_gateway: FakeGateway, actors: ModuleType
) -> None:
    with bind_context(request_id="web-before", tenant="acme", team="search"):
        actors.summarize.send("inside")
    first = actors.summarize.send("outside-1")
    second = actors.summarize.send("outside-2")
    wait_for_gateway_calls(fresh_gateway, 3, TIMEOUT)

    found = received_by_label(fresh_gateway)
    assert found["inside"] == ("web-before", "acme", "search", None, None)
    assert found["outside-1"] == (first.options["aigw_request_id"], None, None, None, None)
    assert found["outside-2"] == (second.options["aigw_request_id"], None, None, None, None)
    assert first.options["aigw_request_id"] != second.options["aigw_request_id"]


@pytest.mark.usefixtures("workers")
def test_retried_message_keeps_the_request_id_and_tenant_of_its_sender(
    fresh_gateway: FakeGateway, actors: ModuleType
) -> None:
    with bind_context(request_id="web-retry-1", tenant="acme", team="search"):
        actors.fail_once.send("retried", "aigw-e2e-dramatiq-marker")
    wait_for_gateway_calls(fresh_gateway, 2, TIMEOUT)

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


def test_message_with_garbage_options_runs_without_that_context_and_logs_one_warning(
    fresh_gateway: FakeGateway, actors: ModuleType, workers: WorkerProcesses
) -> None:
    warned_before = workers.output().count(WARNING)
    for name, options in GARBAGE.items():
        actors.summarize.send_with_options(args=(name,), **options)
    wait_for_gateway_calls(fresh_gateway, len(GARBAGE), TIMEOUT)

    found = received_by_label(fresh_gateway)
    for name in GARBAGE:
        request_id, *rest = found[name]
        assert request_id is not None
        assert len(request_id) == 32
        assert rest == [None, None, None, None]
    deadline = time.monotonic() + 5
    while workers.output().count(WARNING) - warned_before < len(GARBAGE):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert workers.output().count(WARNING) - warned_before == len(GARBAGE)
