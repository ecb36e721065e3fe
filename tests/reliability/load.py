"""A load of concurrent requests to an example app, and the check of what the gateway recorded.

Each request gets a random request ID, a random tenant, team and user (through the app's demo
resolver, through trusted headers, or none at all), a random session on half of them, and a
question that names it. The gateway's record of each call must then carry its originating
request's ID, tenant, team, user, session and question, and each response must show the same
values and the answer to its own question.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from aigw_middleware.testing import FakeGateway, RecordedRequest
from example_asgi import tenancy as asgi_tenancy
from example_django.demo.tenancy import DEMO_USERS
from example_flask import tenancy as flask_tenancy

ANSWER_PREFIX = "Hello from FakeGateway: "
FIELDS = ("request_id", "tenant", "team", "user", "session")
Values = tuple[str | None, ...]


@dataclass(frozen=True)
class ExampleApp:
    """How to drive one example app: its views and how it is told a demo tenant and user."""

    #: View paths and their weights in the mix.
    views: Mapping[str, int]
    #: The demo choices: name -> {"tenant": ..., "team": ..., "user": ...}.
    demo: Mapping[str, Mapping[str, str]]
    #: Request headers and query parameters that select the demo choice ``name``.
    select: Callable[[str], tuple[dict[str, str], dict[str, str]]]
    #: Views whose gateway call happens after the response (a background task).
    after_response: frozenset[str] = frozenset()


# Under gunicorn an async view runs its own event loop per request, with its own client and
# connection: it costs several times a sync view, so it has a smaller share of the mix there.
DJANGO_WSGI = ExampleApp(
    views={"/chat/": 8, "/stream/": 8, "/chat-async/": 1, "/stream-async/": 1},
    demo=DEMO_USERS,
    select=lambda user: ({"X-Demo-User": user}, {}),
)
DJANGO_ASGI = dataclasses.replace(DJANGO_WSGI, views=dict.fromkeys(DJANGO_WSGI.views, 1))


def query_demo(tenancy: Any) -> dict[str, dict[str, str]]:
    """The demo choices of the Flask and FastAPI examples: ``?tenant=...&user=...``."""
    return {
        f"{tenant}/{user}": {**tenancy.DEMO_TENANTS[tenant], "user": user_id}
        for tenant in tenancy.DEMO_TENANTS
        for user, user_id in tenancy.DEMO_USER_IDS.items()
    }


def query_select(name: str) -> tuple[dict[str, str], dict[str, str]]:
    tenant, user = name.split("/")
    return {}, {"tenant": tenant, "user": user}


FLASK = ExampleApp(
    views={"/chat": 6, "/stream": 6, "/stream-ctx": 6, "/async": 1},
    demo=query_demo(flask_tenancy),
    select=query_select,
)
FASTAPI = ExampleApp(
    views={"/chat": 1, "/stream": 1, "/openai": 1, "/background": 1},
    demo=query_demo(asgi_tenancy),
    select=query_select,
    after_response=frozenset({"/background"}),
)


def server_env(gateway: FakeGateway) -> dict[str, str]:
    """The example apps' settings: this gateway, tenant and user headers trusted from loopback."""
    return {
        "DJANGO_SETTINGS_MODULE": "example_django.project.settings",
        "AIGW_BASE_URL": gateway.base_url,
        "AIGW_TRUST_TENANT_HEADERS_FROM": "127.0.0.1/32",
        "AIGW_MAX_RETRIES": "0",
    }


@dataclass(frozen=True)
class Sent:
    request_id: str
    view: str
    tenant: str | None
    team: str | None
    user: str | None
    session: str | None
    headers: dict[str, str]
    params: dict[str, str]

    @property
    def question(self) -> str:
        return f"q-{self.request_id}"

    @property
    def values(self) -> Values:
        return (self.request_id, self.tenant, self.team, self.user, self.session)


@dataclass
class Outcome:
    """The figures of one load: a problem list for each kind of failure."""

    requests: int = 0
    gateway_calls: int = 0
    seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "gateway_calls": self.gateway_calls,
            "mismatches": len(self.mismatches),
            "missing": len(self.missing),
            "seconds": self.seconds,
        }


def plan(app: ExampleApp, count: int, rng: random.Random) -> list[Sent]:
    """``count`` requests over the app's views: a third each with a demo tenant and user,
    trusted headers with random values, and none; half of them in a random session."""
    sent = []
    for _ in range(count):
        request_id = f"rel-{secrets.token_hex(8)}"
        view = rng.choices(list(app.views), weights=list(app.views.values()))[0]
        kind = rng.randrange(3)
        headers = {"X-AI-Request-Id": request_id}
        params: dict[str, str] = {}
        chosen: Mapping[str, str | None] = {}
        if kind == 0:
            name = rng.choice(sorted(app.demo))
            chosen = app.demo[name]
            extra_headers, params = app.select(name)
            headers.update(extra_headers)
        elif kind == 1:
            chosen = {
                "tenant": f"t-{secrets.token_hex(4)}",
                "team": f"team-{secrets.token_hex(3)}",
                "user": f"u-{secrets.token_hex(6)}",
            }
            headers.update({f"X-AI-{key.title()}": str(value) for key, value in chosen.items()})
        session = f"s-{secrets.token_hex(6)}" if rng.randrange(2) else None
        if session is not None:
            headers["X-AI-Session"] = session
        sent.append(
            Sent(
                request_id,
                view,
                chosen.get("tenant"),
                chosen.get("team"),
                chosen.get("user"),
                session,
                headers,
                params,
            )
        )
    return sent


async def drive(base_url: str, requests: Sequence[Sent], in_flight: int) -> list[str]:
    """Sends ``requests`` with ``in_flight`` at a time; the problems seen in the responses."""
    problems: list[str] = []
    queue: asyncio.Queue[Sent] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    # A new connection per request: a server may close an idle keep-alive connection just as the
    # next request goes out on it, and that race is the load generator's, not the app's.
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as http:

        async def worker() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                problems.extend(await fetch(http, item))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return problems


async def fetch(http: httpx.AsyncClient, item: Sent) -> list[str]:
    """One request and the problems of its response."""
    try:
        response = await http.get(
            item.view, headers=item.headers, params={**item.params, "q": item.question}
        )
    except httpx.TransportError as exc:
        return [f"{item.request_id} {item.view}: {type(exc).__name__} {exc}"]
    return check_response(item, response)


def check_response(item: Sent, response: httpx.Response) -> list[str]:
    """What is wrong with one response: status, echoed ID, values the view saw, its answer."""
    where = f"{item.request_id} {item.view}"
    if response.status_code != 200:
        return [f"{where}: status {response.status_code}: {response.text[:200]}"]
    problems = []
    if response.headers.get("x-ai-request-id") != item.request_id:
        problems.append(f"{where}: response ID {response.headers.get('x-ai-request-id')}")
    try:
        reports = _reports(response)
    except ValueError as exc:
        return [*problems, f"{where}: unreadable body: {exc}: {response.text[:200]}"]
    for report in reports:
        seen = tuple(report.get(name) for name in FIELDS)
        if "request_id" in report and seen != item.values:
            problems.append(f"{where}: view saw {seen}, expected {item.values}")
        answer = report.get("answer", report.get("text"))
        if answer is not None and answer != ANSWER_PREFIX + item.question:
            problems.append(f"{where}: answer {answer!r} is not for {item.question!r}")
    return problems


def _reports(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        lines = [json.loads(line) for line in response.text.splitlines() if line]
        if not lines or lines[-1].get("event") != "end":
            raise ValueError("the stream did not end")
        return [line for line in lines if "event" in line]
    body = json.loads(response.text)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return [body]


def check_gateway(
    requests: Sequence[Sent], recorded: Sequence[RecordedRequest], outcome: Outcome
) -> None:
    """Every recorded call carries its originating request's values; every request made one."""
    by_id = {item.request_id: item for item in requests}
    calls: dict[str, int] = dict.fromkeys(by_id, 0)
    for call in recorded:
        request_id = call.headers.get("x-ai-request-id")
        item = by_id.get(request_id or "")
        if item is None:
            outcome.mismatches.append(f"gateway call with unknown request ID {request_id!r}")
            continue
        calls[item.request_id] += 1
        got = (*(call.headers.get(f"x-ai-{name}") for name in FIELDS[1:]), _question(call))
        want = (*item.values[1:], item.question)
        if got != want:
            outcome.mismatches.append(
                f"{item.request_id} {item.view}: gateway got {got}, want {want}"
            )
    outcome.gateway_calls = sum(calls.values())
    outcome.missing.extend(f"{rid}: no gateway call" for rid, n in calls.items() if n == 0)


def _question(call: RecordedRequest) -> str | None:
    try:
        return str(call.json["messages"][-1]["content"])
    except (KeyError, IndexError, TypeError):
        return None


def run_load(
    app: ExampleApp,
    base_url: str,
    gateway: FakeGateway,
    *,
    count: int,
    in_flight: int = 50,
    ignore: frozenset[str] = frozenset(),
    seed: int = 0,
) -> Outcome:
    """Sends ``count`` requests to the app and checks them and the gateway's record."""
    requests = plan(app, count, random.Random(seed))
    outcome = Outcome(requests=count)
    started = time.monotonic()
    outcome.mismatches.extend(asyncio.run(drive(base_url, requests, in_flight)))
    if any(item.view in app.after_response for item in requests):
        _wait_for_calls(gateway, len(requests) + len(ignore))
    outcome.seconds = time.monotonic() - started
    recorded = [
        call for call in gateway.requests if call.headers.get("x-ai-request-id") not in ignore
    ]
    check_gateway(requests, recorded, outcome)
    return outcome


def _wait_for_calls(gateway: FakeGateway, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(gateway.requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)
