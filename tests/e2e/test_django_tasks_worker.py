"""Django's tasks framework end to end: a Django project under gunicorn enqueues tasks inside
requests on the django-tasks database backend; two ``db_worker`` processes run them; the
FakeGateway receives, per task, the values of the web request that enqueued it.

The project is tests/e2e/tasks_project.py (settings, URLs, the view and the task, defined with
``aigw_middleware.django.tasks.task``), on a SQLite file of this test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ROOT, ServerProcess, free_port, gunicorn
from tests.e2e.workers import (
    WorkerProcesses,
    load,
    mismatches,
    received_by_label,
    send_in_parallel,
    wait_for_gateway_calls,
    wait_for_labels,
)

pytestmark = pytest.mark.e2e

SETTINGS = "tests.e2e.tasks_project"
WORKERS = 2
TASKS = 200
TIMEOUT = 45.0
# One per task: "ignored correlation values in a message", or "ignored a correlation carrier
# that is not a mapping".
WARNING = "aigw: ignored "


@pytest.fixture(scope="module")
def project_env(tmp_path_factory: pytest.TempPathFactory, gateway: FakeGateway) -> dict[str, str]:
    """The environment of the project's processes, with its database migrated."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "TASKS_E2E_DB": str(tmp_path_factory.mktemp("tasks") / "tasks.sqlite3"),
        "AIGW_BASE_URL": gateway.base_url,
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return env


@pytest.fixture(scope="module")
def web(project_env: dict[str, str]) -> Iterator[ServerProcess]:
    port = free_port()
    argv = gunicorn(
        "django.core.wsgi:get_wsgi_application()", port, "--workers", "2", "--threads", "4"
    )
    with ServerProcess(
        argv, port=port, env=project_env, ready_path="/summary/?label=ready"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def workers(project_env: dict[str, str]) -> Iterator[WorkerProcesses]:
    processes = WorkerProcesses()
    for n in range(WORKERS):
        argv = [
            sys.executable, "-m", "django", "db_worker",
            "--interval", "0.05", "--worker-id", f"aigw-e2e-{n}", "--no-reload",
        ]  # fmt: skip
        processes.start(argv, project_env)
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def fresh_gateway(gateway: FakeGateway, workers: WorkerProcesses) -> FakeGateway:
    # The readiness request of the web fixture enqueued a task: let it run first.
    wait_for_gateway_calls(gateway, 1, TIMEOUT)
    gateway.clear()
    return gateway


def enqueue_outside_any_request(project_env: dict[str, str], code: str) -> None:
    """Enqueue tasks from a script of the project, outside any request or bound context."""
    script = f"import django\ndjango.setup()\nfrom {SETTINGS} import summarize\n{code}"
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=project_env, check=True, timeout=60
    )


@pytest.mark.usefixtures("web")
def test_parallel_requests_tasks_reach_the_gateway_with_their_own_requests_values(
    fresh_gateway: FakeGateway, web: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = load(TASKS, "dt")
    http = httpx.Client(base_url=web.base_url, timeout=30)

    def send(request: Any) -> None:
        response = http.get(f"/summary/?{request.query}", headers=request.headers)
        assert response.status_code == 200, response.text
        assert response.headers["X-AI-Request-Id"] == request.request_id

    started = time.monotonic()
    with http:
        send_in_parallel(send, sent, threads=8)
    sent_in = time.monotonic() - started
    wait_for_labels(fresh_gateway, sent, TIMEOUT)
    elapsed = time.monotonic() - started

    wrong = mismatches(sent, fresh_gateway)
    runners = {r.json["metadata"]["worker"] for r in fresh_gateway.requests}
    processes = {runner.split("/")[0] for runner in runners}
    with capsys.disabled():
        print(
            f"\ndjango tasks: {TASKS} tasks from parallel requests across {len(processes)} "
            f"db_worker processes, {len(wrong)} mismatches, {elapsed:.1f} s ({sent_in:.1f} s to enqueue)"
        )
    assert wrong == []
    assert len(processes) == WORKERS


def test_tasks_enqueued_outside_any_request_get_their_own_fresh_request_id_and_no_tenant(
    fresh_gateway: FakeGateway, project_env: dict[str, str]
) -> None:
    enqueue_outside_any_request(
        project_env, "summarize.enqueue('outside-1')\nsummarize.enqueue('outside-2')"
    )
    wait_for_gateway_calls(fresh_gateway, 2, TIMEOUT)

    found = received_by_label(fresh_gateway)
    ids = []
    for label in ("outside-1", "outside-2"):
        request_id, *rest = found[label]
        assert rest == [None, None, None, None]
        assert request_id is not None
        assert len(request_id) == 32
        ids.append(request_id)
    assert ids[0] != ids[1]


GARBAGE: dict[str, Any] = {
    "not-a-dict": "aigw_request_id=web-1",
    "wrong-types": {"aigw_request_id": 12345, "aigw_tenant": ["acme"], "aigw_team": {"a": 1}},
    "10-KiB": {"aigw_request_id": "r" * 10240, "aigw_tenant": "t" * 10240},
    "control-chars": {"aigw_request_id": "web\r\nX-Forged: 1", "aigw_session": "s\x00\x1b[2J"},
}


def test_task_with_a_garbage_carrier_runs_without_that_context_and_logs_one_warning(
    fresh_gateway: FakeGateway, project_env: dict[str, str], workers: WorkerProcesses
) -> None:
    warned_before = workers.output().count(WARNING)
    enqueue_outside_any_request(
        project_env,
        "".join(
            f"summarize.enqueue({name!r}, aigw_correlation={carrier!r})\n"
            for name, carrier in GARBAGE.items()
        ),
    )
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
