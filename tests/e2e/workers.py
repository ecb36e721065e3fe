"""Real task-queue infrastructure for end-to-end tests: a redis-server on a free loopback port,
worker processes started from their own command line, and the parallel-request load whose
tasks must each reach the gateway with their own request's values.

scripts/setup.d/20-redis.sh installs redis-server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from aigw_middleware.testing import FakeGateway
from tests.e2e.servers import ROOT, free_port

STARTUP_TIMEOUT = 30.0


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A fresh redis-server on 127.0.0.1 without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: run scripts/setup.d/20-redis.sh "
            "(scripts/test runs it) or install the redis-server package"
        )
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with tempfile.NamedTemporaryFile(prefix="aigw-redis-", suffix=".log") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_redis(server, port, Path(log.name))
            yield f"redis://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)


def _wait_for_redis(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    ping = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    deadline = time.monotonic() + 15.0
    try:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"redis-server exited with {server.returncode}:\n{log.read_text()}")
            with contextlib.suppress(redis.ConnectionError):
                if ping.ping():
                    return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not answer within 15 s:\n{log.read_text()}")
    finally:
        ping.close()


class WorkerProcesses:
    """Worker processes started from a command line each; their output goes to one file each."""

    def __init__(self) -> None:
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._stack = contextlib.ExitStack()

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        log = self._stack.enter_context(
            tempfile.NamedTemporaryFile(prefix="aigw-worker-", suffix=".log")  # noqa: SIM115
        )
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((process, Path(log.name)))

    def output(self) -> str:
        return "\n".join(
            f"--- worker {index} ---\n{path.read_text(errors='replace')}"
            for index, (_, path) in enumerate(self.processes)
        )

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready():
            exited = [p.returncode for p, _ in self.processes if p.poll() is not None]
            if exited or time.monotonic() > deadline:
                pytest.fail(f"{what} (exit codes {exited}):\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process, _ in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._stack.close()


@dataclass(frozen=True)
class Sent:
    """What one web request sent and so what its task must call the gateway with."""

    label: str
    request_id: str
    tenant: str
    team: str
    user: str
    session: str

    @property
    def query(self) -> str:
        return f"label={self.label}&tenant={self.tenant}&team={self.team}&user={self.user}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-AI-Request-Id": self.request_id, "X-AI-Session": self.session}

    def expected(self) -> tuple[str, str, str, str, str]:
        return (self.request_id, self.tenant, self.team, self.user, self.session)


def load(count: int, prefix: str) -> list[Sent]:
    """``count`` requests with values of their own: every value differs between requests."""
    return [
        Sent(
            label=f"{prefix}-{n}",
            request_id=f"{prefix}-req-{n:04d}",
            tenant=f"tenant-{n}",
            team=f"team-{n % 7}-{n}",
            user=f"user-{n}@example.test",
            session=f"{prefix}-session-{n}",
        )
        for n in range(count)
    ]


def send_in_parallel(send: Callable[[Sent], None], requests: list[Sent], threads: int) -> None:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, requests))


def wait_for_gateway_calls(gateway: FakeGateway, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(gateway.requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_labels(gateway: FakeGateway, sent: list[Sent], timeout: float) -> None:
    """Wait until the gateway received a call for every one of ``sent`` (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    labels = {s.label for s in sent}
    while not labels <= received_by_label(gateway).keys() and time.monotonic() < deadline:
        time.sleep(0.05)


def received_by_label(gateway: FakeGateway) -> dict[str, tuple[str | None, ...]]:
    """What the gateway received per task, keyed by the label each task sends as its prompt."""
    names = ("x-ai-request-id", "x-ai-tenant", "x-ai-team", "x-ai-user", "x-ai-session")
    found: dict[str, tuple[str | None, ...]] = {}
    for request in gateway.requests:
        label = request.json["messages"][0]["content"]
        found[label] = tuple(request.headers.get(name) for name in names)
    return found


def mismatches(sent: list[Sent], gateway: FakeGateway) -> list[str]:
    """Tasks whose gateway call lacked or differed from their own request's values."""
    found = received_by_label(gateway)
    return [
        f"{s.label}: sent {s.expected()}, gateway received {found.get(s.label)}"
        for s in sent
        if found.get(s.label) != s.expected()
    ]


def resolve_from_query(request: object) -> dict[str, str | None]:
    """Stands in for a resolver that reads the authenticated user: tenant, team and user."""
    query = request.GET  # type: ignore[attr-defined]
    return {"tenant": query.get("tenant"), "team": query.get("team"), "user": query.get("user")}
