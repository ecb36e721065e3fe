"""``python -m aigw_middleware.testing``: FakeGateway as a console.

It prints one line per request it receives (time, method, path, status, duration, request ID,
tenant, team and the gateway-native correlation headers it recognises), or one JSON object per
line with ``--json``, and can inject faults so an app's retries and budget errors can be watched.
No body and no credential header is ever printed.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import httpx

from ._fakeanswers import QueuedResponse, error_answer
from ._fakegateway import FakeGateway
from ._fakeserver import INSPECTION_PATH, Exchange
from .profiles import _PROFILES as PROFILES
from .profiles import _CorrelationNames as CorrelationNames

__all__ = ["DEFAULT_PORT", "main"]

# Not 8787: the Portkey gateway listens there, and both often run side by side.
DEFAULT_PORT = 8790
_DEFAULT_KEEP = 1000
_MAX_SHOWN_CHARS = 200

# The generic headers (default names), shown under their field names, request ID first.
_GENERIC_FIELDS = {name.lower(): field for name, field in CorrelationNames().pairs()}
_TEXT_LABELS = {"request_id": "id"}
_ALWAYS_SHOWN = ("request_id", "tenant", "team")
# What each gateway profile sends besides the generic headers, and Helicone's custom
# properties, which apps also set themselves. Credentials (authorization, x-portkey-api-key,
# helicone-auth, ...) are never among them.
_NATIVE_HEADERS = frozenset(
    name.lower() for profile in PROFILES.values() for name in profile.native_names
) - {"x-portkey-forward-headers"}  # routing, not correlation: it names the generic headers
_NATIVE_PREFIXES = ("helicone-property-",)


class _ConsoleGateway(FakeGateway):
    """A FakeGateway that prints each exchange and answers with the configured faults."""

    def __init__(self, args: argparse.Namespace, output: TextIO) -> None:
        super().__init__(args.host, args.port, args.base_path)
        self._requests = deque(maxlen=args.keep)
        self._fail_rate: float = args.fail_rate
        self._latency: float = args.latency
        self._budget_after: int | None = args.budget_after
        self._random = random.Random(args.seed)
        self._format: Callable[[Exchange], str] = json_line if args.json else text_line
        self._output = output
        self._output_lock = threading.Lock()

    def _unqueued_response(self, received: int) -> QueuedResponse | None:
        if self._budget_after is not None and received > self._budget_after:
            message = f"FakeGateway: the budget of {self._budget_after} requests is spent."
            answer = error_answer(402, message, "budget_exceeded", "budget_exceeded")
            return QueuedResponse(answer, delay=self._latency, fault="budget-after")
        if self._fail_rate > 0 and self._random.random() < self._fail_rate:
            message = f"FakeGateway: failure injected by --fail-rate {self._fail_rate:g}."
            answer = error_answer(503, message, "server_error")
            return QueuedResponse(answer, delay=self._latency, fault="fail-rate")
        if self._latency > 0:
            return QueuedResponse(None, delay=self._latency)
        return None

    def _completed(self, exchange: Exchange) -> None:
        self.emit(self._format(exchange))

    def emit(self, line: str) -> None:
        """Print one whole line; handler threads print concurrently."""
        with self._output_lock:
            print(line, file=self._output, flush=True)


def correlation_headers(headers: httpx.Headers) -> dict[str, str]:
    """The correlation headers the console recognises, by lower-case name, in arrival order."""
    return {
        name: value
        for name, value in headers.items()
        if name in _GENERIC_FIELDS or name in _NATIVE_HEADERS or name.startswith(_NATIVE_PREFIXES)
    }


def _fields(headers: dict[str, str]) -> dict[str, str | None]:
    fields: dict[str, str | None] = dict.fromkeys(_ALWAYS_SHOWN)
    fields.update(
        {field: headers[name] for name, field in _GENERIC_FIELDS.items() if name in headers}
    )
    return fields


def _shown(value: str | None) -> str:
    """A value safe to print on one terminal line: plain when it is, else JSON-quoted."""
    if value is None:
        return "-"
    if len(value) > _MAX_SHOWN_CHARS:
        value = value[:_MAX_SHOWN_CHARS] + "..."
    if value and all("!" <= char <= "~" and char != "\\" for char in value):
        return value
    return json.dumps(value)


def text_line(exchange: Exchange) -> str:
    """``18:43:15.123 POST /v1/chat/completions 200 3ms id=... tenant=acme team=support ...``."""
    headers = correlation_headers(exchange.request.headers)
    when = datetime.fromtimestamp(exchange.received).strftime("%H:%M:%S.%f")[:-3]
    status = str(exchange.status) if exchange.status is not None else "---"
    parts = [
        when,
        _shown(exchange.request.method),
        _shown(exchange.request.path),
        status,
        f"{exchange.duration * 1000:.0f}ms",
    ]
    parts += [f"{_TEXT_LABELS.get(k, k)}={_shown(v)}" for k, v in _fields(headers).items()]
    parts += [
        f"{name}={_shown(value)}" for name, value in headers.items() if name not in _GENERIC_FIELDS
    ]
    if exchange.fault is not None:
        parts.append(f"[{exchange.fault}]")
    return " ".join(parts)


def json_line(exchange: Exchange) -> str:
    """The same as `text_line`, as one JSON object."""
    headers = correlation_headers(exchange.request.headers)
    record: dict[str, Any] = {
        "event": "request",
        "time": datetime.fromtimestamp(exchange.received)
        .astimezone()
        .isoformat("T", "milliseconds"),
        "method": exchange.request.method,
        "path": exchange.request.path,
        "status": exchange.status,
        "duration_ms": round(exchange.duration * 1000, 1),
        **_fields(headers),
        "headers": headers,
        "fault": exchange.fault,
    }
    return json.dumps(record)


def _fraction(text: str) -> float:
    value = _seconds(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text}")
    return value


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aigw_middleware.testing",
        description=(
            "Run FakeGateway, a stand-in OpenAI-compatible AI gateway, and print one line per"
            " request it receives with the correlation headers it got. Bodies and credentials"
            " are never printed."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_count(0, 65535),
        default=DEFAULT_PORT,
        help="port, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument("--base-path", default="/v1", help="URL prefix (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    parser.add_argument(
        "--fail-rate",
        type=_fraction,
        default=0.0,
        metavar="P",
        help="answer this fraction of requests (0 to 1) with a 503, which clients retry",
    )
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each answer",
    )
    parser.add_argument(
        "--budget-after",
        type=_count(0),
        metavar="N",
        help=(
            "answer 402 budget_exceeded to every request after the first N"
            f" (counted again from 0 after DELETE {INSPECTION_PATH})"
        ),
    )
    parser.add_argument("--seed", type=int, help="seed for --fail-rate, to repeat a run exactly")
    parser.add_argument(
        "--keep",
        type=_count(1),
        default=_DEFAULT_KEEP,
        metavar="N",
        help=f"how many recent requests {INSPECTION_PATH} returns (default: %(default)s)",
    )
    return parser


def _banner(gateway: FakeGateway, args: argparse.Namespace) -> str:
    base_url = gateway.base_url
    lines = [
        f"FakeGateway is listening. Point your app at it with the base URL {base_url}",
        f'  Django:       AIGW = {{"BASE_URL": "{base_url}"}}',
        f"  Flask, env:   AIGW_BASE_URL={base_url}",
        f"  Recorded requests: curl {gateway._origin}{INSPECTION_PATH}"
        f"  (curl -X DELETE ... forgets them)",
    ]
    if args.fail_rate > 0:
        lines.append(f"  --fail-rate: {args.fail_rate:.0%} of requests get a 503")
    if args.latency > 0:
        lines.append(f"  --latency: every answer waits {args.latency:g} s")
    if args.budget_after is not None:
        lines.append(f"  --budget-after: requests after the first {args.budget_after} get a 402")
    lines.append("One line per request follows. Ctrl+C stops.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console until SIGINT or SIGTERM.

    The first line on stdout is the base URL (with ``--json``, a ``listening`` event holding
    it); a line per request follows. Hints for people go to stderr.
    """
    parser = _parser()
    args = parser.parse_args(argv)

    gateway = _ConsoleGateway(args, sys.stdout)
    try:
        gateway.start()
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}\n")
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.default_int_handler)
        if args.json:
            listening = {
                "event": "listening",
                "base_url": gateway.base_url,
                "requests_url": gateway._origin + INSPECTION_PATH,
            }
            gateway.emit(json.dumps(listening))
        else:
            gateway.emit(gateway.base_url)
        print(_banner(gateway, args), file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()
    return 0
