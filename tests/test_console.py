"""Specification of the console: ``python -m aigw_middleware.testing`` as a user runs it."""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aigw_middleware import BudgetExceededError, GatewayClient, UpstreamError, bind_context
from aigw_middleware.testing import FakeGateway, main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops the console with SIGTERM")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-console-secret-0123456789"
PROMPT = "the prompt text stays private"
MESSAGES = [{"role": "user", "content": PROMPT}]
LINE_WAIT = 10.0
TIME = r"\d\d:\d\d:\d\d\.\d{3}"


class Console:
    """The console as a subprocess: its stdout read line by line, its stderr kept for the end."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "aigw_middleware.testing", "--port", "0", *args]
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self.first_line = self.next_line()
        self.stderr = ""
        self._stopped = False

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = LINE_WAIT) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the console printed no line within {timeout} s") from None

    def assert_no_more_lines(self, wait: float = 0.3) -> None:
        try:
            extra = self._lines.get(timeout=wait)
        except queue.Empty:
            return
        pytest.fail(f"unexpected console line: {extra}")

    @property
    def origin(self) -> str:
        base_url = self.first_line if self.first_line.startswith("http") else ""
        if not base_url:
            base_url = json.loads(self.first_line)["base_url"]
        return base_url.removesuffix("/v1")

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def stop(self) -> int:
        """Stop it as Ctrl+C or a service manager would; its exit status. Safe to repeat."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5.0)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5.0)
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.process.stdout.close()
        self.stderr = self.process.stderr.read()
        self.process.stderr.close()
        return self.process.returncode


@pytest.fixture
def start_console() -> Iterator[Callable[..., Console]]:
    started: list[Console] = []

    def start(*args: str) -> Console:
        console = Console(*args)
        started.append(console)
        return console

    yield start
    for console in started:
        console.stop()


def gateway_client(console: Console, **overrides: object) -> GatewayClient:
    return GatewayClient(base_url=console.base_url, api_key=API_KEY, **overrides)  # type: ignore[arg-type]


def test_the_example_flask_app_shows_a_live_line_per_gateway_call(
    start_console: Callable[..., Console],
) -> None:
    from example_flask import create_app

    console = start_console()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", console.first_line)
    app = create_app({"TESTING": True, "AIGW_BASE_URL": console.base_url, "AIGW_API_KEY": API_KEY})
    client = app.test_client()

    chat = client.get("/chat?tenant=acme&q=hello", headers={"X-AI-Request-Id": "console-chat-1"})
    assert chat.status_code == 200
    assert re.fullmatch(
        rf"{TIME} POST /v1/chat/completions 200 \d+ms id=console-chat-1 tenant=acme team=support",
        console.next_line(),
    )

    streamed = client.get("/stream?tenant=globex", headers={"X-AI-Request-Id": "console-stream-2"})
    assert streamed.status_code == 200
    assert b"[DONE]" not in streamed.data  # the app re-encodes the stream as NDJSON
    assert re.fullmatch(
        rf"{TIME} POST /v1/chat/completions 200 \d+ms id=console-stream-2 tenant=globex team=research",
        console.next_line(),
    )
    console.assert_no_more_lines()

    assert console.stop() == 0
    assert f"AIGW_BASE_URL={console.base_url}" in console.stderr
    assert f'AIGW = {{"BASE_URL": "{console.base_url}"}}' in console.stderr


def test_lines_show_the_native_headers_of_the_profile_and_never_a_secret_or_a_body(
    start_console: Callable[..., Console],
) -> None:
    console = start_console()
    for profile in ("helicone", "portkey", "litellm"):
        with (
            gateway_client(console, header_profile=profile) as client,
            bind_context(request_id=f"native-{profile}", tenant="acme", team="support"),
        ):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with (
        gateway_client(console, header_profile="helicone") as client,
        bind_context(request_id="native-user", tenant="acme", user="u-7", session="chat-42"),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    helicone, portkey, litellm, with_user = (console.next_line() for _ in range(4))
    assert helicone.endswith(
        "id=native-helicone tenant=acme team=support helicone-property-request-id=native-helicone"
        " helicone-property-tenant=acme helicone-property-team=support"
    )
    metadata = '{"request_id":"native-portkey","tenant":"acme","team":"support"}'
    assert portkey.endswith(
        f"id=native-portkey tenant=acme team=support x-portkey-trace-id=native-portkey"
        f" x-portkey-metadata={metadata}"
    )
    assert " x-litellm-trace-id=native-litellm " in litellm
    assert re.search(r" x-litellm-call-id=[0-9a-f-]{36}( |$)", litellm)
    assert with_user.endswith(
        "id=native-user tenant=acme team=- user=u-7 session=chat-42"
        " helicone-property-request-id=native-user helicone-property-tenant=acme"
        " helicone-user-id=u-7 helicone-session-id=chat-42"
    )

    console.stop()
    everything = "\n".join((helicone, portkey, litellm, with_user, console.stderr))
    assert API_KEY not in everything
    assert "authorization" not in everything.lower()
    assert PROMPT not in everything


def test_json_lines_carry_the_same_fields(start_console: Callable[..., Console]) -> None:
    console = start_console("--json")
    listening = json.loads(console.first_line)
    assert listening["event"] == "listening"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", listening["base_url"])
    assert listening["requests_url"] == console.origin + "/_aigw/requests"

    with (
        gateway_client(console, header_profile="portkey") as client,
        bind_context(request_id="json-1", tenant="acme", team="support"),
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    line = console.next_line()

    record = json.loads(line)
    assert record.pop("duration_ms") >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", record.pop("time"))
    assert record == {
        "event": "request",
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "request_id": "json-1",
        "tenant": "acme",
        "team": "support",
        "headers": {
            "x-ai-request-id": "json-1",
            "x-ai-tenant": "acme",
            "x-ai-team": "support",
            "x-portkey-trace-id": "json-1",
            "x-portkey-metadata": '{"request_id":"json-1","tenant":"acme","team":"support"}',
        },
        "fault": None,
    }
    assert API_KEY not in line
    assert PROMPT not in line


def test_the_inspection_endpoint_returns_and_forgets_what_the_console_received(
    start_console: Callable[..., Console],
) -> None:
    console = start_console()
    with gateway_client(console) as client, bind_context(request_id="inspect-1", tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    console.next_line()

    with httpx.Client(base_url=console.origin, timeout=5.0, trust_env=False) as http:
        recorded = http.get("/_aigw/requests")
        assert recorded.status_code == 200
        assert recorded.headers["content-type"] == "application/json"
        [request] = recorded.json()
        assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
        assert request["headers"]["x-ai-request-id"] == "inspect-1"
        assert request["headers"]["x-ai-tenant"] == "acme"
        assert all(name == name.lower() for name in request["headers"])
        assert request["json"] == {"model": "gpt-4o-mini", "messages": MESSAGES}

        assert http.delete("/_aigw/requests").status_code == 204
        assert http.get("/_aigw/requests").json() == []
    console.assert_no_more_lines()  # inspecting is not a gateway request


def test_fail_rate_shows_each_retry_with_the_same_request_id(
    start_console: Callable[..., Console],
) -> None:
    console = start_console("--fail-rate", "1")
    with (
        gateway_client(console, max_retries=1) as client,
        bind_context(request_id="retried-1"),
        pytest.raises(UpstreamError) as raised,
    ):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert raised.value.status == 503
    assert raised.value.attempts == 2
    for _ in range(2):
        assert re.fullmatch(
            rf"{TIME} POST /v1/chat/completions 503 \d+ms id=retried-1 tenant=- team=- \[fail-rate\]",
            console.next_line(),
        )
    console.stop()
    assert "--fail-rate: 100% of requests get a 503" in console.stderr


def test_fail_rate_with_a_seed_fails_a_repeatable_share(
    start_console: Callable[..., Console],
) -> None:
    def statuses() -> list[str]:
        console = start_console("--fail-rate", "0.5", "--seed", "7")
        with httpx.Client(base_url=console.base_url, timeout=5.0, trust_env=False) as http:
            for _ in range(20):
                http.get("/models")
        return [console.next_line().split()[3] for _ in range(20)]

    first, second = statuses(), statuses()
    assert first == second
    assert set(first) == {"200", "503"}


def test_budget_after_n_answers_402_until_the_recorded_requests_are_cleared(
    start_console: Callable[..., Console],
) -> None:
    console = start_console("--budget-after", "2")
    with gateway_client(console) as client, bind_context(request_id="budget-1", tenant="acme"):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(BudgetExceededError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raised.value.attempts == 1  # never retried
        assert raised.value.status == 402

        lines = [console.next_line() for _ in range(3)]
        assert [line.split()[3] for line in lines] == ["200", "200", "402"]
        assert lines[2].endswith("id=budget-1 tenant=acme team=- [budget-after]")

        httpx.delete(f"{console.origin}/_aigw/requests", timeout=5.0, trust_env=False)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert console.next_line().split()[3] == "200"


def test_latency_delays_every_answer(start_console: Callable[..., Console]) -> None:
    console = start_console("--latency", "0.3")
    with gateway_client(console) as client:
        started = time.monotonic()
        client.models.list()
        elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    shown = re.fullmatch(
        rf"{TIME} GET /v1/models 200 (\d+)ms id=[0-9a-f]{{32}} .*", console.next_line()
    )
    assert shown is not None
    assert int(shown.group(1)) >= 300


def test_hostile_header_values_are_quoted_not_sent_to_the_terminal(
    start_console: Callable[..., Console],
) -> None:
    console = start_console()
    port = int(console.origin.rsplit(":", 1)[1])
    raw = (
        b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"X-AI-Request-Id: clear\x1b[2Jscreen\r\nX-AI-Tenant: two words\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(raw)
        assert sock.recv(12) == b"HTTP/1.1 200"

    line = console.next_line()
    assert "\x1b" not in line
    assert line.endswith(r'id="clear\u001b[2Jscreen" tenant="two words" team=-')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-rate", "1.5"], "argument --fail-rate: must be between 0 and 1, got 1.5"),
        (["--fail-rate", "often"], "argument --fail-rate: must be a number, got 'often'"),
        (["--latency", "-1"], "argument --latency: must be a number of at least 0, got -1"),
        (["--latency", "nan"], "argument --latency: must be a number of at least 0, got nan"),
        (["--budget-after", "-1"], "argument --budget-after: must be at least 0, got -1"),
        (["--budget-after", "2.5"], "argument --budget-after: must be a whole number, got '2.5'"),
        (["--port", "70000"], "argument --port: must be at most 65535, got 70000"),
    ],
)
def test_a_bad_switch_value_is_a_usage_error_naming_it(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_help_names_the_default_port_which_is_not_portkeys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "(default: 8790)" in out
    for switch in ("--json", "--fail-rate", "--latency", "--budget-after", "--host", "--port"):
        assert switch in out


def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGateway() as taken, pytest.raises(SystemExit) as exited:
        main(["--port", str(taken.port)])
    assert exited.value.code == 1
    assert f"cannot listen on 127.0.0.1:{taken.port}" in capsys.readouterr().err


def test_a_burst_of_150_connections_waits_in_the_backlog_and_is_served(
    start_console: Callable[..., Console],
) -> None:
    # While the console is stopped, the kernel completes each handshake into the listen
    # backlog; a backlog too small for the burst drops the extra connections instead.
    console = start_console()
    port = int(console.origin.rsplit(":", 1)[1])
    connections: list[socket.socket] = []
    console.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(150):
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=2.0))
    finally:
        console.process.send_signal(signal.SIGCONT)
    try:
        for connection in connections:
            connection.sendall(
                b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
        status_lines = [connection.recv(12) for connection in connections]
    finally:
        for connection in connections:
            connection.close()

    assert status_lines == [b"HTTP/1.1 200"] * 150
    lines = [console.next_line() for _ in range(150)]
    assert all(" GET /v1/models 200 " in line for line in lines)
