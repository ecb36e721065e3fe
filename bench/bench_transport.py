"""Per-call cost of correlation: plain httpx vs. httpx with CorrelationTransport vs. GatewayClient.

Everything runs in-process against ``httpx.MockTransport`` so the numbers are the library's own
overhead, not the network's. Prints a table and writes ``bench/results/transport.json``.

    .venv/bin/python bench/bench_transport.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx

from aigw_middleware import GatewayClient, GatewayConfig, bind_context
from aigw_middleware.transport import CorrelationTransport

BASE = "http://gateway.bench/v1"
BODY = {"object": "list", "data": []}


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=BODY)


def plain_httpx() -> Callable[[], object]:
    client = httpx.Client(transport=httpx.MockTransport(handler), base_url=BASE, trust_env=False)
    return lambda: client.get("models")


def httpx_with_correlation() -> Callable[[], object]:
    config = GatewayConfig(base_url=BASE)
    transport = CorrelationTransport(httpx.MockTransport(handler), config)
    client = httpx.Client(transport=transport, base_url=BASE, trust_env=False)
    return lambda: client.get("models")


def gateway_client() -> Callable[[], object]:
    client = GatewayClient(GatewayConfig(base_url=BASE), transport=httpx.MockTransport(handler))
    return lambda: client.models.list()


CASES = {
    "httpx (baseline)": plain_httpx,
    "httpx + CorrelationTransport": httpx_with_correlation,
    "GatewayClient.models.list": gateway_client,
}


def measure(make: Callable[[], Callable[[], object]], calls: int, rounds: int) -> dict[str, float]:
    call = make()
    for _ in range(1000):
        call()
    per_call = []
    with bind_context(request_id="bench-1", tenant="acme", team="ml"):
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            per_call.append((time.perf_counter() - started) / calls * 1e6)
        tracemalloc.start()
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(1000):
            call()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"us_per_call": statistics.median(per_call), "retained_bytes_per_1000_calls": retained}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = {name: measure(make, args.calls, args.rounds) for name, make in CASES.items()}
    baseline = results["httpx (baseline)"]["us_per_call"]
    print(f"{'case':32} {'µs/call':>9} {'vs httpx':>9} {'retained B/1000 calls':>22}")
    for name, row in results.items():
        row["ratio_to_httpx"] = row["us_per_call"] / baseline
        print(
            f"{name:32} {row['us_per_call']:9.1f} {row['ratio_to_httpx']:8.2f}x"
            f" {row['retained_bytes_per_1000_calls']:22d}"
        )
    out = Path(__file__).parent / "results" / "transport.json"
    out.write_text(
        json.dumps(
            {"python": platform.python_version(), "httpx": httpx.__version__, "results": results},
            indent=2,
        )
    )
    print(f"written: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
