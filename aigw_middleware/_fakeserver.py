"""FakeGateway's HTTP server and request handler, and what they record.

The handler reads each request, records it with its gateway, answers it (a queued response,
else the normal answer from `_fakeanswers`) and reports the exchange. ``/_aigw/...`` paths are
the gateway's own control endpoints, answered here and never recorded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httpx

from ._fakeanswers import (
    Answer,
    QueuedResponse,
    answer_for,
    error_answer,
    merge_headers,
    parse_json,
)

if TYPE_CHECKING:
    from ._fakegateway import FakeGateway

__all__ = ["INSPECTION_PATH", "Exchange", "RecordedRequest", "Server"]

INSPECTION_PATH = "/_aigw/requests"
_CONTROL_PREFIX = "/_aigw"
_NO_BODY_STATUSES = frozenset({HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED})
# socketserver's default backlog is 5: a burst of new connections (a test suite's worth of
# clients, a load generator) overflows it and the extra connections hang until they time out.
# The kernel caps this at net.core.somaxconn.
_LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request as FakeGateway received it.

    `path` includes the query string; `headers` is case-insensitive and keeps repeated
    headers; `json` is the parsed body, or None when the body is empty or not JSON.
    """

    method: str
    """The HTTP method, e.g. ``"POST"``."""
    path: str
    """The path with the query string, e.g. ``"/v1/chat/completions"``."""
    headers: httpx.Headers
    """The request headers: case-insensitive, repeated headers kept."""
    body: bytes
    """The raw request body."""
    json: Any
    """The body parsed as JSON, or None when it is empty or not JSON."""


@dataclass(frozen=True)
class Exchange:
    """One request and what became of it: `status` is None when it went unanswered."""

    request: RecordedRequest
    received: float  # time.time() when the request arrived
    duration: float  # seconds until the answer was sent
    status: int | None
    fault: str | None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = _LISTEN_BACKLOG

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


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGateway"
    sys_version = ""
    _sent_status: int | None = None

    def setup(self) -> None:
        super().setup()
        # An answer's head and body (and each streamed event) are separate writes; with
        # Nagle's algorithm on, each one after the first would wait for the client's delayed
        # ACK of the one before: about 40 ms a call on a kept-alive connection.
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any, **kwargs: Any) -> None:
        """Log nothing: request lines, headers and bodies may carry secrets."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        received, started = time.time(), time.monotonic()
        self._sent_status = None
        gateway = cast(Server, self.server).gateway
        try:
            body = self._read_body()
            framing_ok = True
        except ValueError:
            body, framing_ok = b"", False
        route = urlsplit(self.path).path
        if route == _CONTROL_PREFIX or route.startswith(_CONTROL_PREFIX + "/"):
            self._control(gateway, route, framing_ok)
            return
        payload = parse_json(body)
        headers = httpx.Headers(
            [
                (name.encode("latin-1"), str(value).encode("latin-1"))
                for name, value in self.headers.items()
            ]
        )
        request = RecordedRequest(self.command, self.path, headers, body, payload)
        sequence, queued = gateway._record(request)
        try:
            self._respond(gateway, payload, sequence, queued, framing_ok)
        finally:
            gateway._completed(
                Exchange(
                    request=request,
                    received=received,
                    duration=time.monotonic() - started,
                    status=self._sent_status,
                    fault=queued.fault if queued is not None else None,
                )
            )

    def _respond(
        self,
        gateway: FakeGateway,
        payload: Any,
        sequence: int,
        queued: QueuedResponse | None,
        framing_ok: bool,
    ) -> None:
        request_id = f"fgw-{sequence}"
        if not framing_ok:
            self.close_connection = True
            answer = error_answer(400, "Malformed request body framing.", "invalid_request_error")
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
            answer = answer_for(gateway._base_path, self.command, self.path, payload, sequence)
        except Exception as exc:  # a FakeGateway bug must not print request data
            answer = error_answer(
                500, f"FakeGateway internal error: {type(exc).__name__}", "server_error"
            )
        if queued is None:
            self._send(answer, request_id)
        else:
            self._send(answer, request_id, queued.headers, queued.stream_cut_after)

    def _control(self, gateway: FakeGateway, route: str, framing_ok: bool) -> None:
        """The inspection endpoint: recorded requests for loopback clients, never recorded."""
        if not framing_ok:
            self.close_connection = True
            self._send(
                error_answer(400, "Malformed request body framing.", "invalid_request_error")
            )
        elif not _is_loopback(str(self.client_address[0])):
            message = f"{INSPECTION_PATH} answers loopback clients only."
            self._send(error_answer(403, message, "permission_error"))
        elif route != INSPECTION_PATH:
            message = f"Unknown endpoint: {self.command} {route}; try GET {INSPECTION_PATH}."
            self._send(error_answer(404, message, "not_found_error"))
        elif self.command in ("GET", "HEAD"):
            self._send(Answer(200, gateway._recorded_json()))
        elif self.command == "DELETE":
            gateway._forget_requests()
            self._send(Answer(204, b"", None))
        else:
            message = f"{INSPECTION_PATH} accepts GET and DELETE, not {self.command}."
            answer = error_answer(405, message, "invalid_request_error")
            self._send(answer, extra_headers=[("Allow", "GET, HEAD, DELETE")])

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
        answer: Answer,
        request_id: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        stream_cut_after: int | None = None,
    ) -> None:
        headers = [("x-request-id", request_id)] if request_id is not None else []
        if answer.content_type is not None:
            headers.append(("Content-Type", answer.content_type))
        if answer.events is not None:
            headers += [("Cache-Control", "no-cache"), ("Transfer-Encoding", "chunked")]
        elif answer.status not in _NO_BODY_STATUSES:
            headers.append(("Content-Length", str(len(answer.body))))
        self._sent_status = answer.status
        self.send_response(answer.status)
        for name, value in merge_headers(headers, extra_headers):
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD" or answer.status in _NO_BODY_STATUSES:
            return
        if answer.events is None:
            self.wfile.write(answer.body)
            return
        stopping = cast(Server, self.server).gateway._stopping
        for index, event in enumerate(answer.events):
            if stopping.is_set() or (stream_cut_after is not None and index >= stream_cut_after):
                self.close_connection = True
                return
            self.wfile.write(b"%X\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
