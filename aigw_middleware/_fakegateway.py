"""FakeGateway: the public face of the fake gateway (lifecycle, recorded requests, queue).

Its server and request handler live in `_fakeserver`, its answers in `_fakeanswers` and its
command line in `_console`.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any

from ._fakeanswers import (
    Answer,
    QueuedResponse,
    dump_json,
    error_answer,
    error_type_for,
    reason_phrase,
)
from ._fakeserver import Exchange, RecordedRequest, Server

__all__ = ["FakeGateway"]

_SERVE_POLL_INTERVAL = 0.05


class FakeGateway:
    """An OpenAI-compatible HTTP server on a background thread.

    Endpoints, relative to `base_url`: ``POST /chat/completions`` (plain or
    ``"stream": true``), ``POST /embeddings`` and ``GET /models``. Anything else is a 404.
    Every response carries ``x-request-id: fgw-<n>``, n being the request's sequence
    number (1-based, never reset).

    ``GET /_aigw/requests`` (outside `base_url`, from loopback addresses only) returns the
    recorded requests as a JSON list of objects with ``method``, ``path``, ``headers``
    (lower-case names, repeated headers joined with ``", "``) and ``json``;
    ``DELETE /_aigw/requests`` forgets them. These calls are not recorded themselves.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, base_path: str = "/v1") -> None:
        self._host = host
        self._port = port
        self._base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque()
        self._queue: deque[QueuedResponse] = deque()
        self._sequence = 0
        self._received_since_clear = 0
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None

    def start(self) -> FakeGateway:
        """Bind the socket and start serving; does nothing if already running."""
        with self._lifecycle_lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = Server((self._host, self._port), self)
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
        return self._origin + self._base_path

    @property
    def _origin(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

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
            self._queue.clear()
        self._forget_requests()

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

        answer: Answer | None
        if json is not None:
            answer = Answer(status, dump_json(json))
        elif body is not None:
            content = body.encode() if isinstance(body, str) else bytes(body)
            answer = Answer(status, content, "text/plain; charset=utf-8")
        elif status == HTTPStatus.OK:
            answer = None
        elif status >= 400:
            answer = error_answer(
                status, f"FakeGateway queued error: {reason_phrase(status)}", error_type_for(status)
            )
        else:
            answer = Answer(status, b"", None)
        queued = QueuedResponse(
            answer=answer,
            headers=tuple((headers or {}).items()),
            delay=delay,
            drop=drop,
            stream_cut_after=stream_cut_after,
        )
        with self._lock:
            self._queue.extend(itertools.repeat(queued, times))

    def _forget_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._received_since_clear = 0

    def _record(self, request: RecordedRequest) -> tuple[int, QueuedResponse | None]:
        with self._lock:
            self._sequence += 1
            self._received_since_clear += 1
            self._requests.append(request)
            if self._queue:
                return self._sequence, self._queue.popleft()
            return self._sequence, self._unqueued_response(self._received_since_clear)

    def _unqueued_response(self, received: int) -> QueuedResponse | None:
        """How to answer when nothing is queued; `received` counts requests since a clear."""
        return None

    def _completed(self, exchange: Exchange) -> None:
        """Called once per recorded request, after its answer was sent (or abandoned)."""

    def _recorded_json(self) -> bytes:
        return dump_json(
            [
                {
                    "method": request.method,
                    "path": request.path,
                    "headers": dict(request.headers.items()),
                    "json": request.json,
                }
                for request in self.requests
            ]
        )
