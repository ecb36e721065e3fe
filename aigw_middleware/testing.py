"""A fake OpenAI-compatible AI gateway for tests and demos.

`FakeGateway` is a small stdlib HTTP server that answers chat completions (plain and
streamed), embeddings and model listings deterministically, records every request it
receives, and can be told to misbehave (errors, delays, dropped connections, cut
streams) for the next requests::

    with FakeGateway() as gw:
        client = httpx.Client(base_url=gw.base_url)
        client.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": [...]})
        assert gw.last is not None and gw.last.headers["x-correlation-id"] == ...

It is also a pytest plugin providing the `fake_gateway` fixture, and a command line::

    python -m aigw_middleware.testing --port 8787
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json as jsonlib
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pytest = None  # type: ignore[assignment]

__all__ = ["FakeGateway", "RecordedRequest"]

_CREATED = 1_700_000_000
_REPLY_PREFIX = "Hello from FakeGateway: "
_MAX_ECHOED_CHARS = 200
_EMBEDDING_DIMENSIONS = 8
_DEFAULT_CHAT_MODEL = "gpt-4o-mini"
_DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
_MODEL_IDS = ("gpt-4o-mini", "openai/gpt-4o-mini", "text-embedding-3-small")
# The server frames every body itself; letting a queued header override these would
# desynchronise the connection instead of producing the intended response.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
_NO_BODY_STATUSES = frozenset({HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED})
_SERVE_POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    """One request as FakeGateway received it.

    `path` includes the query string; `headers` is case-insensitive and keeps repeated
    headers; `json` is the parsed body, or None when the body is empty or not JSON.
    """

    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    json: Any


@dataclass(frozen=True)
class _Answer:
    """A response to send: a complete body, or SSE events streamed as HTTP chunks."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    events: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class _QueuedResponse:
    answer: _Answer | None  # None: the normal answer for the path, with `headers` added
    headers: tuple[tuple[str, str], ...]
    delay: float
    drop: bool
    stream_cut_after: int | None


class FakeGateway:
    """An OpenAI-compatible HTTP server on a background thread.

    Endpoints, relative to `base_url`: ``POST /chat/completions`` (plain or
    ``"stream": true``), ``POST /embeddings`` and ``GET /models``. Anything else is a 404.
    Every response carries ``x-request-id: fgw-<n>``, n being the request's sequence
    number (1-based, never reset).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, base_path: str = "/v1") -> None:
        self._host = host
        self._port = port
        self._base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: deque[_QueuedResponse] = deque()
        self._sequence = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    def start(self) -> FakeGateway:
        """Bind the socket and start serving; does nothing if already running."""
        with self._lifecycle_lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _Server((self._host, self._port), self)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _SERVE_POLL_INTERVAL},
                name=f"FakeGateway:{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            self._bound_port = server.server_port
            return self

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call repeatedly.

        Pending delayed responses are abandoned: their connections are closed unanswered.
        """
        with self._lifecycle_lock:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._server = self._thread = None
            self._stopping.set()
            server.shutdown()
            server.close_connections()
            server.server_close()
            thread.join()

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (the actual one when constructed with port=0)."""
        if self._bound_port is None:
            raise RuntimeError("FakeGateway has not been started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """The gateway base URL, e.g. ``http://127.0.0.1:54321/v1``.

        Still available after stop(), which makes it usable for "gateway down" tests.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}{self._base_path}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> RecordedRequest | None:
        """The most recent request, or None if there was none."""
        with self._lock:
            return self._requests[-1] if self._requests else None

    def clear(self) -> None:
        """Forget recorded requests and queued responses (the sequence number goes on)."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    def queue_response(
        self,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: str | bytes | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int = 1,
        stream_cut_after: int | None = None,
    ) -> None:
        """Answer the next `times` requests, whatever their path, with this response.

        Queued responses are used first in, first out. `json` sends a JSON body, `body`
        sends str/bytes as text/plain. With neither, a 200 gives the normal answer for the
        path (plus `headers`), an error status gives an OpenAI-style error body, and any
        other status an empty body. `headers` override the defaults, including
        ``x-request-id``, except the framing headers the server computes itself.

        `delay` waits that many seconds before answering; `drop` closes the connection
        without answering; `stream_cut_after=N` makes a normal streamed chat answer stop
        after N SSE events with the connection closed mid-body.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be between 200 and 599, got {status}")
        if json is not None and body is not None:
            raise ValueError("pass json or body, not both")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        if stream_cut_after is not None and stream_cut_after < 0:
            raise ValueError(f"stream_cut_after must not be negative, got {stream_cut_after}")

        answer: _Answer | None
        if json is not None:
            answer = _Answer(status, _dump(json))
        elif body is not None:
            content = body.encode() if isinstance(body, str) else bytes(body)
            answer = _Answer(status, content, "text/plain; charset=utf-8")
        elif status == HTTPStatus.OK:
            answer = None
        elif status >= 400:
            answer = _error_answer(
                status, f"FakeGateway queued error: {_reason(status)}", _error_type(status)
            )
        else:
            answer = _Answer(status, b"", None)
        queued = _QueuedResponse(
            answer=answer,
            headers=tuple((headers or {}).items()),
            delay=delay,
            drop=drop,
            stream_cut_after=stream_cut_after,
        )
        with self._lock:
            self._queue.extend(itertools.repeat(queued, times))

    def _record(self, request: RecordedRequest) -> tuple[int, _QueuedResponse | None]:
        with self._lock:
            self._sequence += 1
            self._requests.append(request)
            queued = self._queue.popleft() if self._queue else None
            return self._sequence, queued

    def _answer(self, method: str, path: str, payload: Any, sequence: int) -> _Answer:
        route = urlsplit(path).path
        base = self._base_path
        if base and not (route == base or route.startswith(base + "/")):
            return _not_found(method, route)
        endpoint = route[len(base) :]
        if method == "GET" and endpoint == "/models":
            return _models_answer()
        if method != "POST" or endpoint not in ("/chat/completions", "/embeddings"):
            return _not_found(method, route)
        if not isinstance(payload, dict):
            return _error_answer(
                400,
                "We could not parse the JSON body of your request: expected a JSON object.",
                "invalid_request_error",
            )
        if endpoint == "/chat/completions":
            return _chat_answer(payload, sequence)
        return _embeddings_answer(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], gateway: FakeGateway) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.gateway = gateway
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open connection so handler threads blocked on them return."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away or the gateway is stopping
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGateway"
    sys_version = ""

    def log_message(self, *args: Any, **kwargs: Any) -> None:
        """Log nothing: request lines, headers and bodies may carry secrets."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        gateway = cast(_Server, self.server).gateway
        try:
            body = self._read_body()
            framing_ok = True
        except ValueError:
            body, framing_ok = b"", False
        payload = _parse_json(body)
        headers = httpx.Headers(
            [
                (name.encode("latin-1"), str(value).encode("latin-1"))
                for name, value in self.headers.items()
            ]
        )
        request = RecordedRequest(self.command, self.path, headers, body, payload)
        sequence, queued = gateway._record(request)
        request_id = f"fgw-{sequence}"

        if not framing_ok:
            self.close_connection = True
            answer = _error_answer(400, "Malformed request body framing.", "invalid_request_error")
            self._send(answer, request_id)
            return
        if queued is not None:
            if queued.delay > 0 and gateway._stopping.wait(queued.delay):
                self.close_connection = True
                return
            if queued.drop:
                self.close_connection = True
                return
            if queued.answer is not None:
                self._send(queued.answer, request_id, queued.headers)
                return
        try:
            answer = gateway._answer(self.command, self.path, payload, sequence)
        except Exception as exc:  # a FakeGateway bug must not print request data
            answer = _error_answer(
                500, f"FakeGateway internal error: {type(exc).__name__}", "server_error"
            )
        if queued is None:
            self._send(answer, request_id)
        else:
            self._send(answer, request_id, queued.headers, queued.stream_cut_after)

    def _read_body(self) -> bytes:
        """Read the request body; raise ValueError if its framing is invalid."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        size = int(length)
        if size < 0:
            raise ValueError("negative Content-Length")
        body = self.rfile.read(size)
        if len(body) != size:
            raise ValueError("truncated body")
        return body

    def _read_chunked_body(self) -> bytes:
        chunks = []
        while True:
            size_line = self.rfile.readline(1024)
            if not size_line.endswith(b"\n"):
                raise ValueError("truncated chunk size")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(3).strip():
                raise ValueError("bad chunk")
            chunks.append(chunk)
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def _send(
        self,
        answer: _Answer,
        request_id: str,
        extra_headers: Sequence[tuple[str, str]] = (),
        stream_cut_after: int | None = None,
    ) -> None:
        headers = [("x-request-id", request_id)]
        if answer.content_type is not None:
            headers.append(("Content-Type", answer.content_type))
        if answer.events is not None:
            headers += [("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")]
        elif answer.status not in _NO_BODY_STATUSES:
            headers.append(("Content-Length", str(len(answer.body))))
        self.send_response(answer.status)
        for name, value in _merge_headers(headers, extra_headers):
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD" or answer.status in _NO_BODY_STATUSES:
            return
        if answer.events is None:
            self.wfile.write(answer.body)
            return
        stopping = cast(_Server, self.server).gateway._stopping
        for index, event in enumerate(answer.events):
            if stopping.is_set() or (stream_cut_after is not None and index >= stream_cut_after):
                self.close_connection = True
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


def _merge_headers(
    defaults: Sequence[tuple[str, str]], overrides: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    overrides = [(n, v) for n, v in overrides if n.lower() not in _FRAMING_HEADERS]
    overridden = {name.lower() for name, _ in overrides}
    return [(n, v) for n, v in defaults if n.lower() not in overridden] + overrides


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return jsonlib.loads(body)
    except ValueError:
        return None


def _dump(value: Any) -> bytes:
    return jsonlib.dumps(value, separators=(",", ":")).encode()


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error")


def _error_answer(status: int, message: str, error_type: str) -> _Answer:
    return _Answer(status, _dump({"error": {"message": message, "type": error_type, "code": None}}))


def _not_found(method: str, path: str) -> _Answer:
    return _error_answer(404, f"Unknown endpoint: {method} {path}", "not_found_error")


def _models_answer() -> _Answer:
    models = [
        {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "fake-gateway"}
        for model_id in _MODEL_IDS
    ]
    return _Answer(200, _dump({"object": "list", "data": models}))


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


def _chat_answer(request: dict[str, Any], sequence: int) -> _Answer:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return _error_answer(400, "'messages' must be a list.", "invalid_request_error")
    model = request.get("model")
    if not isinstance(model, str):
        model = _DEFAULT_CHAT_MODEL
    content = _REPLY_PREFIX + _last_user_text(messages)[:_MAX_ECHOED_CHARS]
    prompt_tokens = sum(_word_count(_message_text(message)) for message in messages)
    completion_tokens = _word_count(content)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    completion_id = f"chatcmpl-fgw-{sequence}"
    if request.get("stream") is True:
        stream_options = request.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        usage_or_none = usage if include_usage is True else None
        events = _chat_stream_events(completion_id, model, content, usage_or_none)
        return _Answer(200, content_type="text/event-stream", events=events)
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return _Answer(200, _dump(completion))


def _chat_stream_events(
    completion_id: str, model: str, content: str, usage: dict[str, int] | None
) -> tuple[bytes, ...]:
    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": choices,
        }

    def choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish_reason}

    # Each word keeps its trailing whitespace, so the deltas concatenate to `content`.
    words = re.findall(r"\S+\s*", content)
    chunks = [chunk([choice({"role": "assistant", "content": ""})])]
    chunks += [chunk([choice({"content": word})]) for word in words]
    chunks.append(chunk([choice({}, "stop")]))
    if usage is not None:
        chunks.append({**chunk([]), "usage": usage})
    return (*(b"data: " + _dump(c) + b"\n\n" for c in chunks), b"data: [DONE]\n\n")


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [
        round(int.from_bytes(digest[4 * i : 4 * i + 4], "big") / 2**31 - 1, 6)
        for i in range(_EMBEDDING_DIMENSIONS)
    ]


def _embeddings_answer(request: dict[str, Any]) -> _Answer:
    raw_input = request.get("input")
    texts = [raw_input] if isinstance(raw_input, str) else raw_input
    if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
        return _error_answer(
            400, "'input' must be a string or a non-empty list of strings.", "invalid_request_error"
        )
    model = request.get("model")
    if not isinstance(model, str):
        model = _DEFAULT_EMBEDDING_MODEL
    tokens = sum(_word_count(text) for text in texts)
    data = [
        {"object": "embedding", "index": index, "embedding": _embedding(text)}
        for index, text in enumerate(texts)
    ]
    return _Answer(
        200,
        _dump(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        ),
    )


if pytest is not None:

    @pytest.fixture
    def fake_gateway() -> Iterator[FakeGateway]:
        """A running FakeGateway, stopped after the test."""
        with FakeGateway() as gateway:
            yield gateway

    __all__ += ["fake_gateway"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a FakeGateway until SIGINT or SIGTERM; print its base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m aigw_middleware.testing",
        description="Run a fake OpenAI-compatible AI gateway.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8787, help="port, 0 for any (default: %(default)s)"
    )
    parser.add_argument("--base-path", default="/v1", help="URL prefix (default: %(default)s)")
    args = parser.parse_args(argv)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    gateway = FakeGateway(args.host, args.port, args.base_path)
    try:
        gateway.start()
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}\n")
    try:
        print(gateway.base_url, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
