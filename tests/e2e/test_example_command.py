"""The example project's management command, run as a user runs it: each run's log lines and
gateway calls share one request ID of its own, bound by ``@bind_context`` on ``handle``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ROOT

pytestmark = pytest.mark.e2e

LOG_LINE = re.compile(r"request_id=(?P<request_id>\S+) tenant=(?P<tenant>\S+) team=(?P<team>\S+)\]")


def run_digest(gateway: FakeGateway, *topics: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIGW_BASE_URL": gateway.base_url}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the example project's own settings
    return subprocess.run(
        [sys.executable, "example_django/manage.py", "digest", *topics],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_each_run_of_the_command_logs_and_calls_the_gateway_under_one_request_id_of_its_own(
    gateway: FakeGateway,
) -> None:
    gateway.clear()
    runs = [run_digest(gateway, "sales", "support"), run_digest(gateway, "billing")]

    request_ids = []
    for run, calls in zip(runs, (gateway.requests[:2], gateway.requests[2:]), strict=True):
        logged = [match.groupdict() for match in LOG_LINE.finditer(run.stderr)]
        [request_id] = {line["request_id"] for line in logged}
        # The command's two lines, and the library's line per gateway call.
        assert len(logged) == 2 + len(calls)
        assert {(line["tenant"], line["team"]) for line in logged} == {("acme", "reports")}
        assert {
            (c.headers["x-ai-request-id"], c.headers["x-ai-tenant"], c.headers["x-ai-team"])
            for c in calls
        } == {(request_id, "acme", "reports")}
        assert run.stdout.strip().endswith(f"request ID {request_id}")
        request_ids.append(request_id)
    assert len(gateway.requests) == 3
    assert request_ids[0] != request_ids[1]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in request_ids)
