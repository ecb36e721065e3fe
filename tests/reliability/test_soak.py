"""Soak: many requests through the Django middleware and many outbound calls, in-process.

The default run makes 5,000 requests and 2,000 calls; ``--soak`` makes 100,000 and 20,000.
Memory is measured after a warm-up and at the end (after a garbage collection): the resident
set may grow by less than 5 MB. Nothing may stay bound, and no async client or event loop may
outlive its loop (the per-loop clients are looked for among all live objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import secrets
import time
import weakref
from collections.abc import Iterator
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory, override_settings

from aigw_middleware import (
    AsyncGatewayClient,
    GatewayConfig,
    bind_context,
    current_context,
    get_async_client,
    get_client,
)
from aigw_middleware import client as client_module
from aigw_middleware.testing import FakeGateway

from .conftest import Figures
from .resources import nothing_left_behind, open_sockets, rss_bytes

MAX_GROWTH = 5 * 1024 * 1024
MESSAGES = [{"role": "user", "content": "soak"}]


def live(kind: type) -> int:
    """How many objects of ``kind`` are alive (``type()``, not ``isinstance``, which would
    evaluate Django's lazy objects)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), kind))


@contextlib.contextmanager
def without_db_connection_checks() -> Iterator[None]:
    """The soak touches no database: Django's per-request connection checks are left out, as
    its test Client does (the test run forbids database access outside marked tests)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


@contextlib.contextmanager
def records_not_kept_for_the_report() -> Iterator[None]:
    """pytest keeps every log record of a test for its report, and the secrets check lets every
    level through: over thousands of calls that is the test harness's memory, not the
    library's. pytest's capture handlers are set aside while the soak runs (the records are
    still made, formatted by the library's filters and scanned by the secrets check)."""
    root = logging.getLogger()
    set_aside = [h for h in root.handlers if type(h).__name__ == "LogCaptureHandler"]
    for handler in set_aside:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in set_aside:
            root.addHandler(handler)


def serve(handler: WSGIHandler, environ: dict[str, Any]) -> tuple[str | None, bytes]:
    """One request through the WSGI handler: the response's X-AI-Request-Id and its body."""
    started: list[list[tuple[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(headers)

    body = handler(environ, start_response)
    try:
        content = b"".join(body)
    finally:
        body.close()  # type: ignore[attr-defined]
    echoed = [value for name, value in started[0] if name.lower() == "x-ai-request-id"]
    return (echoed[0] if echoed else None), content


def test_requests_through_the_django_middleware_leave_nothing_behind(
    soak: bool, figures: Figures
) -> None:
    count = 100_000 if soak else 5_000
    warm_up = count // 10
    rng = random.Random(0)
    # The handler a WSGI server calls (the test Client leaves three signal finalizers behind
    # per request, which would hide the middleware's own memory use).
    handler = WSGIHandler()
    factory = RequestFactory(REMOTE_ADDR="127.0.0.1")
    wrong: list[str] = []
    settings = override_settings(
        ROOT_URLCONF="tests.reliability.django_urls",
        AIGW={"BASE_URL": "http://gateway.test/v1", "TRUST_TENANT_HEADERS_FROM": ["127.0.0.1/32"]},
    )
    started = time.monotonic()
    with settings, without_db_connection_checks(), records_not_kept_for_the_report():
        for n in range(count):
            if n == warm_up:
                gc.collect()
                baseline = rss_bytes()
            request_id, tenant = f"soak-{n}-{secrets.token_hex(4)}", f"t{rng.randrange(1000)}"
            headers = {"HTTP_X_AI_REQUEST_ID": request_id, "HTTP_X_AI_TENANT": tenant}
            path = "/seen/" if n % 2 else "/seen-stream/"
            environ = factory.get(path, **headers).environ  # type: ignore[arg-type]
            echoed, content = serve(handler, environ)
            if n % 2:
                seen = json.loads(content)
                got = (seen["request_id"], seen["tenant"])
            else:
                lines = set(content.decode().split())
                got = (lines.pop() if len(lines) == 1 else f"{lines}", tenant)
            if got != (request_id, tenant) or echoed != request_id:
                wrong.append(f"{request_id}: {got}, response ID {echoed}")
    gc.collect()
    growth = rss_bytes() - baseline

    figures(
        "soak: requests through the Django middleware",
        requests=count,
        wrong=len(wrong),
        rss_growth_mb=growth / 2**20,
        context_left=current_context() is not None,
        seconds=time.monotonic() - started,
    )
    assert wrong == [], wrong[:5]
    assert growth < MAX_GROWTH
    assert current_context() is None


def test_outbound_calls_on_threads_and_short_lived_loops_leave_nothing_behind(
    soak: bool, figures: Figures
) -> None:
    count = 20_000 if soak else 2_000
    per_loop = 10
    batches = count // per_loop
    # Each new event loop resolves the gateway's address on a fresh executor thread, and each such
    # thread may get its own malloc arena until their number is capped: the resident set grows
    # for the first 50 or so loops, then stays flat. Memory is measured after those.
    warm_up = max(batches // 10, 120)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []
    wrong: list[str] = []

    def sync_calls(n: int) -> None:
        for i in range(per_loop):
            with bind_context(tenant=f"t{n}") as bound:
                if i % 2:
                    answer = get_client().chat.completions.create(model="m", messages=MESSAGES)
                    got = answer.request_id
                else:
                    with get_client().chat.completions.create(
                        model="m", messages=MESSAGES, stream=True
                    ) as chunks:
                        list(chunks)
                    got = chunks.request_id
            if got != bound.request_id:
                wrong.append(f"{bound.request_id}: {got}")

    async def async_calls(n: int) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        for i in range(per_loop):
            with bind_context(tenant=f"t{n}") as bound:
                if i % 2:
                    answer = await get_async_client().chat.completions.create(
                        model="m", messages=MESSAGES
                    )
                    got = answer.request_id
                else:
                    chunks = await get_async_client().chat.completions.create(
                        model="m", messages=MESSAGES, stream=True
                    )
                    async with chunks:
                        async for _ in chunks:
                            pass
                    got = chunks.request_id
            if got != bound.request_id:
                wrong.append(f"{bound.request_id}: {got}")

    started = time.monotonic()
    with nothing_left_behind() as resources, records_not_kept_for_the_report():
        with FakeGateway() as gateway:
            client_module.configure(
                GatewayConfig.from_env({}, base_url=gateway.base_url, max_retries=0)
            )
            try:
                for n in range(batches):
                    if n == warm_up:
                        gc.collect()
                        baseline = rss_bytes()
                    if n % 2:
                        sync_calls(n)
                    else:
                        asyncio.run(async_calls(n))  # a new event loop each time
                    calls = len(gateway.requests)
                    gateway.clear()  # the gateway's own record is not the library's memory
                    if calls != per_loop:
                        wrong.append(f"batch {n}: the gateway got {calls} calls")
            finally:
                client_module.configure(None)
        gc.collect()
        growth = rss_bytes() - baseline
        loops_left = sum(1 for ref in loops if ref() is not None)
        async_clients_left = live(AsyncGatewayClient)

    figures(
        "soak: outbound calls, sync and on short-lived loops",
        calls=count,
        loops=len(loops),
        wrong=len(wrong),
        rss_growth_mb=growth / 2**20,
        loops_left=loops_left,
        async_clients_left=async_clients_left,
        threads_after=resources().threads,
        sockets_after=resources().sockets,
        seconds=time.monotonic() - started,
    )
    assert wrong == [], wrong[:5]
    assert (loops_left, async_clients_left) == (0, 0)
    assert growth < MAX_GROWTH
    assert current_context() is None


def test_an_event_loop_closed_without_shutdown_asyncgens_keeps_no_client_or_socket(
    figures: Figures,
) -> None:
    """The per-loop clients belong to their loop: neither keeps the other alive, and closing the
    loop closes its clients' connections then and there, not when the collector runs."""

    async def call() -> weakref.ref[AsyncGatewayClient]:
        client = get_async_client()
        await client.models.list()
        await client.chat.completions.create(model="m", messages=MESSAGES)
        return weakref.ref(client)

    refs = []
    sockets_open_after_close = []
    with nothing_left_behind() as resources, FakeGateway() as gateway:
        client_module.configure(
            GatewayConfig.from_env({}, base_url=gateway.base_url, max_retries=0)
        )
        try:
            gc.disable()  # only what loop.close() closes counts, not what the collector finds
            try:
                for _ in range(5):
                    before = open_sockets()
                    loop = asyncio.new_event_loop()
                    client = loop.run_until_complete(call())
                    loop.close()  # no shutdown_asyncgens(), as some loop runners do
                    # The gateway's thread closes its end of each connection soon after.
                    settled = time.monotonic() + 2.0
                    while open_sockets() > before and time.monotonic() < settled:
                        time.sleep(0.02)
                    sockets_open_after_close.append(max(open_sockets() - before, 0))
                    refs.append((weakref.ref(loop), client))
                    del loop, client
            finally:
                gc.enable()
            gc.collect()
            loops_left = sum(1 for loop, _ in refs if loop() is not None)
            clients_left = sum(1 for _, client in refs if client() is not None)
        finally:
            client_module.configure(None)

    figures(
        "soak: event loops closed without shutdown_asyncgens",
        loops=len(refs),
        sockets_left_at_close=max(sockets_open_after_close),
        loops_left=loops_left,
        clients_left=clients_left,
        threads_after=resources().threads,
        sockets_after=resources().sockets,
    )
    assert sockets_open_after_close == [0] * 5
    assert (loops_left, clients_left) == (0, 0)
