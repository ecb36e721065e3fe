"""Real servers for end-to-end tests: start a process on a free loopback port, wait, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server started as a subprocess; its output goes to a temp file shown on failure."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        ready_path: str = "/",
        startup_timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._cwd = cwd
        self._ready_path = ready_path
        self._startup_timeout = startup_timeout
        self._log = tempfile.NamedTemporaryFile(prefix="aigw-e2e-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> str:
        """Everything the server printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self._cwd,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                httpx.get(self.base_url + self._ready_path, timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer within {self._startup_timeout}s:\n{self.output}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(argv: Sequence[str], **kwargs: object) -> Iterator[ServerProcess]:
    """``with running([...], port=p) as server:`` — started and ready, stopped afterwards."""
    server = ServerProcess(argv, **kwargs)  # type: ignore[arg-type]
    with server:
        yield server


def gunicorn(app: str, port: int, *extra: str) -> list[str]:
    """The argv to serve a WSGI ``app`` ("module:callable") with gunicorn on 127.0.0.1."""
    # gunicorn 27 opens a control socket in the home folder by default; parallel servers clash.
    return [
        str(VENV_BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        *extra,
        app,
    ]


def uvicorn(app: str, port: int, *extra: str) -> list[str]:
    """The argv to serve an ASGI ``app`` with uvicorn on 127.0.0.1."""
    return [str(VENV_BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port), *extra, app]
