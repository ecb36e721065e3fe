"""The gateway fault checks' calls, timed, and a gateway that drip-feeds its answer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aigw_middleware import (
    AsyncGatewayClient,
    GatewayClient,
    GatewayConfig,
    GatewayError,
    bind_context,
)
from aigw_middleware.testing import FakeGateway

from .conftest import Figures


@dataclass(frozen=True)
class Observed:
    """What a call did: its result or exception, its attempts and its wall time."""

    result: Any
    error: BaseException | None
    seconds: float

    @property
    def attempts(self) -> int | None:
        return self.error.attempts if isinstance(self.error, GatewayError) else None

    def figures(self) -> dict[str, object]:
        return {
            "raised": type(self.error).__name__ if self.error else "-",
            "attempts": self.attempts if self.attempts is not None else "-",
            "seconds": self.seconds,
        }


def observe(call: Callable[[], Any]) -> Observed:
    """Runs ``call``; any exception is kept, not raised."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:
        return Observed(None, exc, time.monotonic() - started)
    return Observed(result, None, time.monotonic() - started)


MESSAGES = [{"role": "user", "content": "hello"}]
FAST_RETRY = {"retry-after-ms": "1"}
REQUEST_ID = "req-fault-1"
SECRET = "sk-reliability-secret"
COMPLETION = (
    b'{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"slow answer"},"finish_reason":"stop"}]}'
)


def config_for(base_url: str | None = None, **overrides: Any) -> GatewayConfig:
    settings: dict[str, Any] = {"base_url": base_url, "api_key": SECRET, "max_retries": 2}
    return GatewayConfig.from_env({}, **{**settings, **overrides})


def chat(base_url: str | None = None, **overrides: Any) -> Observed:
    """One chat completion with REQUEST_ID bound, through a client closed afterwards."""
    with (
        GatewayClient(config_for(base_url, **overrides)) as client,
        bind_context(request_id=REQUEST_ID),
    ):
        return observe(lambda: client.chat.completions.create(model="m", messages=MESSAGES))


def stream(base_url: str | None = None, **overrides: Any) -> tuple[list[str], Observed]:
    """A streamed chat completion: the deltas received, and how the iteration ended."""
    deltas: list[str] = []

    def read() -> None:
        with client.chat.completions.create(model="m", messages=MESSAGES, stream=True) as chunks:
            deltas.extend(chunk.delta for chunk in chunks)

    with (
        GatewayClient(config_for(base_url, **overrides)) as client,
        bind_context(request_id=REQUEST_ID),
    ):
        return deltas, observe(read)


def ids_at(gateway: FakeGateway) -> list[str | None]:
    return [request.headers.get("x-ai-request-id") for request in gateway.requests]


def record(figures: Figures, check: str, observed: Observed) -> None:
    figures(f"gateway fault: {check}", **observed.figures())


async def async_chat(base_url: str, **overrides: Any) -> Observed:
    async with AsyncGatewayClient(config_for(base_url, **overrides)) as client:
        with bind_context(request_id=REQUEST_ID):
            started = asyncio.get_running_loop().time()
            try:
                result = await client.chat.completions.create(model="m", messages=MESSAGES)
            except Exception as exc:
                return Observed(None, exc, asyncio.get_running_loop().time() - started)
            return Observed(result, None, asyncio.get_running_loop().time() - started)


class DripGateway:
    """A gateway on loopback that answers one byte at a time, ``interval`` seconds apart.

    ``head`` (status line and headers) and ``body`` are dripped in turn; set ``drip_head`` to
    drip the head too, else it is sent at once. Every connection gets the same answer.
    """

    def __init__(
        self, body: bytes, *, interval: float = 0.2, content_type: str = "application/json"
    ) -> None:
        self.head = (
            f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.body = body
        self.interval = interval
        self.drip_head = False
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="DripGateway", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5.0)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            if self.drip_head:
                data = self.head + self.body
            else:
                conn.sendall(self.head)
                data = self.body
            for index in range(len(data)):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(data[index : index + 1])

    @contextlib.contextmanager
    def running(self) -> Iterator[DripGateway]:
        self._accepting.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._accepting.join()
            for thread in self._threads:
                thread.join()
            self._listener.close()
