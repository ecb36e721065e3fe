"""End to end on loopback, and a burst of concurrent async calls.

``run``: the example Django project under gunicorn (gthread) and the FastAPI example under
uvicorn, each calling a FakeGateway in a process of its own (``python -m
aigw_middleware.testing``), driven by a bounded load generator (a fixed number of requests from
a few keep-alive connections, with a time limit). In the load generator's process, the
gateway's threads would wait for the same interpreter lock as the generator's clocks.

Variants: the server without the middleware calling the gateway with plain httpx (baseline),
the shared client, a new httpx client per request (through the correlation transport), a new
``GatewayClient`` per request, and a new OpenAI SDK client per request. One server without the
middleware and one with it serve them all (the way is a query parameter); the baseline and the
shared client, whose p99 are compared, are loaded at the same time, each from connections of its
own, before the other ways. Every server freezes its start-up heap (``bench/e2e_servers.py``).

``burst``: 1,000 concurrent calls on one event loop against a loopback gateway, through
AsyncGatewayClient and the OpenAI SDK's AsyncOpenAI, and in the full run our AsyncOpenAI and
plain httpx with its default pool.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from aigw_middleware._fakeserver import INSPECTION_PATH
from tests.e2e.servers import ServerProcess, free_port, gunicorn, uvicorn

ROOT = Path(__file__).resolve().parents[1]

SERVERS = {
    "django": {
        "argv": lambda port: gunicorn(
            "example_django.project.wsgi:application",
            port,
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "-c",
            "python:bench.e2e_servers",
        ),
        "path": "/bench/",
        "settings": {True: "example_django.project.settings", False: "bench.e2e_django_settings"},
    },
    "fastapi": {
        "argv": lambda port: uvicorn(
            "bench.e2e_servers:asgi_correlated", port, "--factory", "--no-access-log"
        ),
        "baseline_argv": lambda port: uvicorn(
            "bench.e2e_servers:asgi_baseline", port, "--factory", "--no-access-log"
        ),
        "path": "/bench",
    },
}
WAYS = {
    "baseline": "plain",
    "shared": "shared",
    "per_request": "per_request",
    "aigw_per_request": "aigw_per_request",
    "openai_per_request": "openai_per_request",
}


class Gateway:
    """FakeGateway's console on a free loopback port: its base URL and what it received."""

    def __init__(self) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "aigw_middleware.testing", "--port", str(port)]
        self._process = ServerProcess(argv, port=port, ready_path=INSPECTION_PATH)
        self.base_url = f"{self._process.base_url}/v1"

    def __enter__(self) -> Gateway:
        self._process.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._process.stop()

    def received(self, request_id: str) -> bool:
        """Whether one of the most recent requests it received carried ``request_id``."""
        recorded = httpx.get(self._process.base_url + INSPECTION_PATH, timeout=10).json()
        return any(r["headers"].get("x-ai-request-id") == request_id for r in recorded)

    def clear(self) -> None:
        httpx.delete(self._process.base_url + INSPECTION_PATH, timeout=10)


def _server(name: str, correlated: bool, gateway: Gateway) -> ServerProcess:
    """The framework's server with the middleware (``correlated``) or without it."""
    spec: dict[str, Any] = SERVERS[name]
    port = free_port()
    env = {"AIGW_BASE_URL": gateway.base_url, "AIGW_MAX_RETRIES": "0", "PYTHONPATH": str(ROOT)}
    if "settings" in spec:
        env["DJANGO_SETTINGS_MODULE"] = spec["settings"][correlated]
        argv = spec["argv"](port)
    else:
        argv = spec["argv"](port) if correlated else spec["baseline_argv"](port)
    return ServerProcess(argv, port=port, env=env, ready_path=spec["path"] + "?client=plain")


def check(server: ServerProcess, path: str, way: str, gateway: Gateway) -> None:
    """One request with a fresh ID: answered, echoed, seen by the view and sent to the gateway."""
    request_id = f"e2e-{uuid.uuid4().hex}"
    response = httpx.get(
        f"{server.base_url}{path}?client={WAYS[way]}",
        headers={"X-AI-Request-Id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, f"status {response.status_code}: {response.text[:200]}"
    assert response.json()["answer"].startswith("Hello from FakeGateway"), response.text[:200]
    if way == "baseline":
        return
    assert response.headers.get("x-ai-request-id") == request_id, "the response did not echo the ID"
    assert response.json()["request_id"] == request_id, "the view did not see the ID bound"
    assert gateway.received(request_id), "the gateway did not receive the ID"


#: One endpoint of the load: the server's base URL and the target (path and query) to GET.
Endpoint = tuple[str, str]


class Measured(NamedTuple):
    """What the load generator saw of one endpoint."""

    latencies: list[float]
    errors: int
    #: Seconds from the start until its last answer.
    seconds: float


def _latencies(
    endpoints: Sequence[Endpoint], requests: int, concurrency: int, seconds: float
) -> list[Measured]:
    """``requests`` GETs of each endpoint from ``concurrency`` keep-alive connections of its
    own, every endpoint at the same time, ending after ``seconds`` with fewer when a server is
    slower. Endpoints loaded together meet the same moments of a shared machine."""
    latencies: list[list[float]] = [[] for _ in endpoints]
    errors = [0] * len(endpoints)
    ended = [0.0] * len(endpoints)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    remaining = [requests] * len(endpoints)

    def worker(index: int) -> None:
        host, port = endpoints[index][0].removeprefix("http://").split(":")
        target = endpoints[index][1]
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine: list[float] = []
        failed = 0
        try:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[index] <= 0:
                        break
                    remaining[index] -= 1
                started = time.perf_counter()
                try:
                    connection.request("GET", target)
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        failed += 1
                except (OSError, http.client.HTTPException):
                    failed += 1
                    connection.close()
                    connection = http.client.HTTPConnection(host, int(port), timeout=30)
                    continue
                mine.append(time.perf_counter() - started)
        finally:
            connection.close()
            with lock:
                latencies[index].extend(mine)
                errors[index] += failed
                ended[index] = max(ended[index], time.perf_counter())

    threads = [
        threading.Thread(target=worker, args=(index,))
        for _ in range(concurrency)
        for index in range(len(endpoints))
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [
        Measured(latencies[index], errors[index], ended[index] - started)
        for index in range(len(endpoints))
    ]


def _summary(measured: Measured) -> dict[str, Any]:
    latencies, errors, seconds = measured
    if not latencies:
        return {"us": None, "instr": None, "errors": errors, "error": "no request succeeded"}
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {
        "us": round(statistics.median(latencies) * 1e6, 1),
        "instr": None,
        "p99_us": round(p99 * 1e6, 1),
        "rps": round(len(latencies) / seconds, 1),
        "requests": len(latencies),
        "errors": errors,
    }


def load(
    base_url: str, target: str, requests: int, concurrency: int, seconds: float = 30.0
) -> dict[str, Any]:
    """Median and p99 latency and requests per second of ``requests`` GETs of ``target``."""
    return _summary(_latencies([(base_url, target)], requests, concurrency, seconds)[0])


def run(settings: Any) -> dict[str, dict[str, Any]]:
    """Per framework, two servers (without and with the middleware) serve every variant: the
    baseline and the shared client at the same time, then each client-per-request way."""
    results: dict[str, dict[str, Any]] = {}
    with Gateway() as gateway:
        for name, spec in SERVERS.items():
            print(f"   {name}", flush=True)
            servers: dict[bool, ServerProcess] = {}
            try:
                made = {c: _server(name, c, gateway) for c in (False, True)}
                with ThreadPoolExecutor(max_workers=2) as starting:  # both start at once
                    started = {k: starting.submit(server.start) for k, server in made.items()}
                for correlated, future in started.items():
                    try:
                        servers[correlated] = future.result()
                    except RuntimeError as exc:
                        for way in WAYS:
                            if (way != "baseline") == correlated:
                                results[f"{name}_{way}"] = {
                                    "us": None,
                                    "instr": None,
                                    "error": f"server: {exc}"[:400],
                                }
                ways = [way for way in WAYS if (way != "baseline") in servers]
                results.update(_load_ways(name, spec["path"], ways, servers, gateway, settings))
            finally:
                for server in servers.values():
                    server.stop()
                gateway.clear()
    return results


#: The two ways whose p99 are compared, loaded at the same time.
PAIRED = ("baseline", "shared")


def _load_ways(
    name: str,
    path: str,
    ways: list[str],
    servers: dict[bool, ServerProcess],
    gateway: Gateway,
    settings: Any,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}

    def ready(way: str) -> Endpoint | None:
        """Checked and warmed up: the way's endpoint, or None with its error recorded."""
        server = servers[way != "baseline"]
        try:
            check(server, path, way, gateway)
        except AssertionError as exc:
            results[f"{name}_{way}"] = {"us": None, "instr": None, "error": f"check failed: {exc}"}
            return None
        endpoint = (server.base_url, f"{path}?client={WAYS[way]}")
        _latencies([endpoint], 2 * settings.e2e_concurrency, settings.e2e_concurrency, 30.0)
        return endpoint

    # The pair first, before the other ways load more into the server that serves them (the
    # OpenAI SDK's modules, a client's TLS context): the two servers compared are then alike
    # but for the correlation layer.
    pair = [(way, ready(way)) for way in ways if way in PAIRED]
    measured = [(way, endpoint) for way, endpoint in pair if endpoint is not None]
    if measured:
        numbers = _latencies(
            [endpoint for _, endpoint in measured],
            settings.e2e_requests,
            settings.e2e_concurrency,
            settings.e2e_seconds,
        )
        for (way, _), measured_way in zip(measured, numbers, strict=True):
            results[f"{name}_{way}"] = _summary(measured_way)
    for way in ways:
        if way in PAIRED:
            continue
        endpoint = ready(way)
        if endpoint is not None:
            results[f"{name}_{way}"] = load(
                *endpoint,
                settings.e2e_other_requests,
                settings.e2e_concurrency,
                settings.e2e_other_seconds,
            )
    return {f"{name}_{way}": results[f"{name}_{way}"] for way in WAYS if f"{name}_{way}" in results}


# ---------------------------------------------------------------------------------------------
# A burst of concurrent calls on one event loop


def _burst_gateway() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("gateway.py")), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    return process, base_url


async def _burst(name: str, base_url: str, calls: int) -> dict[str, Any]:
    from aigw_middleware import AsyncGatewayClient, GatewayConfig, bind_context

    messages = [{"role": "user", "content": "hi"}]
    config = GatewayConfig(base_url=base_url, api_key="bench-key")
    client: Any
    if name == "aigw_async":
        client = AsyncGatewayClient(config)

        async def call() -> str:
            return (await client.chat.completions.create(model="m", messages=messages)).raw["id"]

    elif name == "httpx_default_pool":
        client = httpx.AsyncClient(base_url=base_url + "/", trust_env=False)

        async def call() -> str:
            response = await client.post(
                "chat/completions", json={"model": "m", "messages": messages}
            )
            return str(response.json()["id"])

    else:
        import openai

        if name == "openai_sdk_async":
            client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-key")
        else:
            from aigw_middleware.openai import AsyncOpenAI

            client = AsyncOpenAI(config=config)

        async def call() -> str:
            return str((await client.chat.completions.create(model="m", messages=messages)).id)

    async def one(index: int) -> str:
        with bind_context(request_id=f"burst-{index}"):
            return await call()

    ok = pool_timeouts = other = 0
    ids: list[str] = []
    started = time.perf_counter()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(one(index) for index in range(calls)), return_exceptions=True), 300
    )
    elapsed = time.perf_counter() - started
    for outcome in outcomes:
        if isinstance(outcome, str):
            ok += 1
            ids.append(outcome)
        elif _is_pool_timeout(outcome):
            pool_timeouts += 1
        else:
            other += 1
    if hasattr(client, "aclose"):
        await client.aclose()
    else:
        await client.close()
    row: dict[str, Any] = {
        "us": round(elapsed * 1e6),
        "instr": None,
        "calls": calls,
        "ok": ok,
        "pool_timeouts": pool_timeouts,
        "other_errors": other,
    }
    sent = {f"chatcmpl-burst-{index}" for index in range(calls)}
    if name in ("aigw_async", "aigw_openai_async") and ok and not sent.issuperset(ids):
        row["error"] = "check failed: the gateway did not receive the bound request IDs"
    if name == "httpx_default_pool":
        row["note"] = "httpx's default pool: 100 connections"
    return row


def _is_pool_timeout(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__name__ == "PoolTimeout":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def burst(settings: Any) -> dict[str, dict[str, Any]]:
    process, base_url = _burst_gateway()
    results = {}
    try:
        names = ["aigw_async", "openai_sdk_async"]
        if getattr(settings, "burst_full", True):
            names[1:1] = ["aigw_openai_async"]
            names.append("httpx_default_pool")
        # A burst first that is not counted: the gateway process's first connections (its
        # code paths, its memory) would otherwise weigh on whichever variant runs first.
        asyncio.run(_burst("aigw_async", base_url, max(1, settings.burst // 10)))
        for name in names:
            print(f"   {name}", flush=True)
            try:
                results[name] = asyncio.run(_burst(name, base_url, settings.burst))
            except (ImportError, TimeoutError) as exc:
                results[name] = {"us": None, "instr": None, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        process.terminate()
        process.wait(timeout=10)
    return results


if __name__ == "__main__":  # a quick look: python -m bench.e2e
    print(json.dumps(burst(type("S", (), {"burst": 1000})()), indent=2))
