"""The demo: correlation end to end, shown as tables.

It starts a gateway stand-in (the embedded FakeGateway) unless ``AIGW_BASE_URL`` is set, makes
calls from plain code, then serves the example apps under real servers (Django under gunicorn
and uvicorn, Flask under gunicorn, FastAPI under uvicorn), sends each a handful of requests and
prints, per request: the ID sent, the ID on the response, the ID the view saw, the app's log line
and what the gateway received. It exits 0 when every ID matches end to end.

    scripts/demo                 # run and exit
    scripts/demo --keep-running  # leave the apps up to try with curl or a browser
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aigw_middleware import GatewayClient, GatewayConfig, GatewayError, bind_context  # noqa: E402
from aigw_middleware.testing import FakeGateway  # noqa: E402
from tests.e2e.servers import ServerProcess, free_port, gunicorn, uvicorn  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello to the demo"}]
BUDGET_BODY = {"error": {"message": "Team budget exhausted", "type": "budget_exceeded"}}


# Tables ----------------------------------------------------------------------------------------


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str] = ()
) -> None:
    """A plain-text table; ``notes[i]``, when given, is printed under row ``i``."""
    table = [list(header), *[list(row) for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print(f"\n== {title}")
    for n, line in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
        elif n - 1 < len(notes) and notes[n - 1]:
            print(f"    {notes[n - 1]}")


def gateway_saw(gateway: FakeGateway | None, request_id: str | None) -> tuple[str, str]:
    """(request ID, 'tenant/team user session') of the gateway call carrying ``request_id``."""
    if gateway is None:
        return "(external)", ""
    for request in gateway.requests:
        if request_id and request.headers.get("x-ai-request-id") == request_id:
            return request_id, attribution(request.headers)
    return "(no call)", ""


def attribution(headers: httpx.Headers) -> str:
    """'tenant/team user session' as the gateway received them (``-`` where absent)."""
    tenant, team, user, session = (
        headers.get(f"x-ai-{name}", "-") for name in ("tenant", "team", "user", "session")
    )
    return f"{tenant}/{team} {user} {session}"


# Part 1: plain code ----------------------------------------------------------------------------


def library_calls(config: GatewayConfig, gateway: FakeGateway | None) -> list[list[str]]:
    """Calls from a script: inside a bound context, streamed, outside any context, an error."""
    rows: list[list[str]] = []

    def row(what: str, bound_id: str, result_id: str, note: str) -> None:
        seen_id, labels = gateway_saw(gateway, result_id)
        rows.append([what, bound_id, result_id, seen_id, labels, note])

    with GatewayClient(config) as client:
        with bind_context(
            request_id="demo-script-1", tenant="acme", team="ml", user="u-7f3a9c", session="nightly"
        ) as bound:
            plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            row("plain call", bound.request_id, plain.request_id, plain.content[:32])
            with client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ) as stream:
                text = "".join(chunk.delta for chunk in stream)
            row("streamed call", bound.request_id, stream.request_id, f"{text[:30]!r}")
        outside = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        row("outside any context", "-", outside.request_id, "a fresh ID per call")
        if gateway is not None:
            gateway.queue_response(402, json=BUDGET_BODY)
            with bind_context(request_id="demo-script-2", tenant="globex") as bound:
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                except GatewayError as exc:
                    row("budget error", bound.request_id, str(exc.request_id), type(exc).__name__)
    return rows


# Part 2: the example apps under real servers ---------------------------------------------------


@dataclass
class Example:
    """An example app, how to serve it, and how its demo picks a tenant."""

    name: str
    argv: Callable[[int], list[str]]
    plain: str
    streamed: str
    tenant_a: dict[str, str]  # query parameters or headers (keys starting with "X-")
    tenant_b: dict[str, str]
    user_a: str  # the opaque ID the gateway gets for tenant_a's demo user
    env: dict[str, str] = field(default_factory=dict)


DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "example_django.project.settings"}
EXAMPLES = [
    Example(
        "Django / gunicorn (WSGI)",
        lambda port: gunicorn("example_django.project.wsgi:application", port, "-w", "1"),
        "/chat/",
        "/stream/",
        {"X-Demo-User": "alice"},
        {"X-Demo-User": "bob"},
        "u-7f3a9c",
        DJANGO_ENV,
    ),
    Example(
        "Django / uvicorn (ASGI)",
        lambda port: uvicorn("example_django.project.asgi:application", port),
        "/chat-async/",
        "/stream-async/",
        {"X-Demo-User": "alice"},
        {"X-Demo-User": "bob"},
        "u-7f3a9c",
        DJANGO_ENV,
    ),
    Example(
        "Flask / gunicorn",
        lambda port: gunicorn("example_flask.app:app", port, "-w", "1"),
        "/chat",
        "/stream-ctx",
        {"tenant": "acme", "user": "alice"},
        {"tenant": "globex", "user": "bob"},
        "u-7f3a9c",
    ),
    Example(
        "FastAPI / uvicorn",
        lambda port: uvicorn("example_asgi.app:app", port),
        "/chat",
        "/stream",
        {"tenant": "acme", "user": "alice"},
        {"tenant": "globex", "user": "bob"},
        "u-7f3a9c",
    ),
]


@dataclass
class Probe:
    what: str
    path: str
    incoming_id: str | None
    tenant: dict[str, str]
    session: str | None = None  # sent as X-AI-Session, as a front end names its conversation
    user: str | None = None  # the user ID the gateway should get
    fail_with_budget_error: bool = False


def probes(example: Example, key: str, external: bool) -> list[Probe]:
    out = [
        Probe(
            "plain, incoming ID",
            example.plain,
            f"demo-{key}-1",
            example.tenant_a,
            f"chat-{key}",
            example.user_a,
        ),
        Probe("plain, no incoming ID", example.plain, None, example.tenant_b),
        Probe(
            "streamed",
            example.streamed,
            f"demo-{key}-2",
            example.tenant_a,
            f"chat-{key}",
            example.user_a,
        ),
    ]
    if not external:
        out.append(
            Probe(
                "gateway budget error",
                example.plain,
                f"demo-{key}-3",
                {},
                fail_with_budget_error=True,
            )
        )
    return out


def view_saw(response: httpx.Response) -> str:
    """The request ID the view reported: JSON body, or the first JSON line of a stream."""
    for text in response.text.splitlines():
        try:
            data = json.loads(text)
        except ValueError:
            return "-"
        if isinstance(data, dict) and data.get("request_id"):
            return str(data["request_id"])
    return "-"


def log_line(server: ServerProcess, request_id: str | None) -> str:
    """The app's own log line for this request (not the library's per-attempt record)."""
    if not request_id:
        return "(none)"
    lines = [line for line in server.output.splitlines() if request_id in line]
    own = [line for line in lines if "example_" in line or "django.request" in line]
    chosen = (own or lines or ["(none)"])[0]
    return chosen if len(chosen) <= 110 else "…" + chosen[-109:]


def exercise(
    example: Example, key: str, gateway: FakeGateway | None
) -> tuple[list[list[str]], bool]:
    """Serve ``example``, send its probes; the table rows and whether every ID matched."""
    port = free_port()
    env = dict(example.env)
    if gateway is not None:
        env.update({"AIGW_BASE_URL": gateway.base_url, "AIGW_MAX_RETRIES": "0"})
    rows: list[list[str]] = []
    logs: list[str] = []
    all_ok = True
    server = ServerProcess(example.argv(port), port=port, env=env, cwd=ROOT)
    with server, httpx.Client(base_url=server.base_url, timeout=20, trust_env=False) as http:
        responses = []
        for probe in probes(example, key, gateway is None):
            headers = {k: v for k, v in probe.tenant.items() if k.startswith("X-")}
            params = {k: v for k, v in probe.tenant.items() if not k.startswith("X-")}
            if probe.incoming_id:
                headers["X-AI-Request-Id"] = probe.incoming_id
            if probe.session:
                headers["X-AI-Session"] = probe.session
            if probe.fail_with_budget_error and gateway is not None:
                gateway.queue_response(402, json=BUDGET_BODY)
            responses.append((probe, http.get(probe.path, params=params, headers=headers)))
        threading.Event().wait(0.3)  # let the server flush its last log lines
        for probe, response in responses:
            echoed = response.headers.get("x-ai-request-id")
            seen = view_saw(response)
            gw_id, labels = gateway_saw(gateway, echoed)
            line = log_line(server, echoed)
            checks = [echoed is not None, line != "(none)"]
            if probe.incoming_id:
                checks.append(echoed == probe.incoming_id)
            if not probe.fail_with_budget_error:
                checks.append(seen == echoed)
            if gateway is not None:
                checks.append(gw_id == echoed)
                if probe.user:
                    checks.append(f" {probe.user} {probe.session}" in labels)
            ok = all(checks)
            all_ok &= ok
            rows.append(
                [
                    probe.what,
                    probe.incoming_id or "-",
                    str(response.status_code),
                    echoed or "-",
                    seen,
                    f"{gw_id} {labels}".strip(),
                    "ok" if ok else "MISMATCH",
                ]
            )
            logs.append(f"app log: {line}")
    return rows, logs, all_ok


@contextlib.contextmanager
def embedded_gateway() -> Iterator[FakeGateway | None]:
    if os.environ.get("AIGW_BASE_URL"):
        yield None
        return
    with FakeGateway() as gateway:
        yield gateway


def keep_running(gateway: FakeGateway | None) -> None:
    """Serve every example until Ctrl-C."""
    servers = []
    env_base = {} if gateway is None else {"AIGW_BASE_URL": gateway.base_url}
    try:
        for example in EXAMPLES:
            port = free_port()
            server = ServerProcess(
                example.argv(port), port=port, env={**example.env, **env_base}, cwd=ROOT
            )
            servers.append(server.start())
            print(f"{example.name:28} {server.base_url}{example.plain}")
        print("\nTry: curl -i -H 'X-AI-Request-Id: my-id-1' <url>?q=hi   (Ctrl-C stops)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        for server in servers:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    # The tables report the library's outcomes; its own warning records would only repeat them.
    logging.getLogger("aigw_middleware").addHandler(logging.NullHandler())
    logging.getLogger("aigw_middleware").propagate = False
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-running", action="store_true", help="leave the apps up")
    args = parser.parse_args(argv)
    with embedded_gateway() as gateway:
        config = GatewayConfig.from_env(**({"base_url": gateway.base_url} if gateway else {}))
        where = "embedded FakeGateway" if gateway else "from AIGW_BASE_URL"
        print(f"gateway: {config.base_url} ({where})")
        print_table(
            "Plain code: bind_context() in a script",
            (
                "call",
                "bound ID",
                "ID of the call",
                "gateway got ID",
                "tenant/team user session",
                "note",
            ),
            library_calls(config, gateway),
        )
        everything_ok = True
        for n, example in enumerate(EXAMPLES, start=1):
            rows, logs, ok = exercise(example, f"app{n}", gateway)
            everything_ok &= ok
            print_table(
                example.name,
                (
                    "request",
                    "ID sent",
                    "status",
                    "response ID",
                    "view saw",
                    "gateway got: ID tenant/team user session",
                    "",
                ),
                rows,
                logs,
            )
        if not everything_ok:
            print("\nSome IDs did not match: see MISMATCH above.")
        elif gateway is None:
            print("\nEvery request: the same ID at the client, in the view and in the app's log.")
            print("(The gateway's side is in its own logs: look for the X-AI-Request-Id values.)")
        else:
            print(
                "\nEvery request: the same ID at the client, in the view, in the app's log and at"
                " the gateway."
            )
        if args.keep_running:
            keep_running(gateway)
    return 0 if everything_ok else 1


if __name__ == "__main__":
    sys.exit(main())
