"""Memory: allocations per operation (tracemalloc), RSS over many operations, and async clients
across many event loops.

Per operation: after a warm-up, the peak of one operation's allocations above what was live
before it (transient), and what is still allocated after 1,000 more operations and a collection
(retained, in total and from aigw_middleware's own files). RSS: the process's resident size
before and after ``inbound_requests`` requests (or ``outbound_calls`` calls).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import aigw_middleware
from bench import inbound, outbound
from bench.measure import Skipped, Variant

PACKAGE = str(Path(aigw_middleware.__file__).resolve().parent)
MEASURED = {
    "django_wsgi": ("baseline", "aigw"),
    "django_asgi": ("baseline", "aigw"),
    "asgi": ("baseline", "aigw"),
    "starlette": ("baseline", "aigw"),
    "flask": ("baseline", "aigw"),
    "outbound": ("baseline", "aigw"),
}


def rss_mb() -> float:
    """The resident set size of this process, in MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def allocations(variant: Variant, ops: int) -> dict[str, float]:
    variant.run(min(ops, 200))
    gc.collect()
    tracemalloc.start()
    try:
        peaks = []
        for _ in range(min(ops, 50)):
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            variant.run(1)
            _, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - before)
        gc.collect()
        first = tracemalloc.take_snapshot()
        variant.run(ops)
        gc.collect()
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    diff = second.compare_to(first, "filename")
    retained = sum(stat.size_diff for stat in diff)
    ours = sum(stat.size_diff for stat in diff if stat.traceback[0].filename.startswith(PACKAGE))
    return {
        "transient_bytes": statistics.median(peaks),
        "retained_bytes_per_op": retained / ops,
        "aigw_retained_bytes_per_op": ours / ops,
    }


def rss_growth(variant: Variant, ops: int) -> float:
    variant.run(min(ops // 10, 2000))
    gc.collect()
    before = rss_mb()
    done = 0
    while done < ops:
        step = min(5000, ops - done)
        variant.run(step)
        done += step
    gc.collect()
    return rss_mb() - before


def async_loops(loops: int) -> dict[str, Any]:
    """``asyncio.run`` ``loops`` times, each calling the gateway through get_async_client()."""
    from aigw_middleware import AsyncGatewayClient, bind_context, get_async_client
    from aigw_middleware.testing import FakeGateway

    with FakeGateway() as gateway:
        os.environ["AIGW_BASE_URL"] = gateway.base_url
        try:

            async def one_call(index: int) -> str:
                with bind_context(request_id=f"loop-{index}"):
                    answer = await get_async_client().chat.completions.create(
                        model=outbound.MODEL, messages=outbound.MESSAGES
                    )
                return answer.content

            for index in range(10):
                asyncio.run(one_call(index))
            gc.collect()
            before = rss_mb()
            for index in range(loops):
                assert asyncio.run(one_call(index)).startswith("Hello from FakeGateway")
            gc.collect()
            growth = rss_mb() - before
            live = sum(1 for obj in gc.get_objects() if isinstance(obj, AsyncGatewayClient))
            sent = {r.headers.get("x-ai-request-id") for r in gateway.requests}
            assert f"loop-{loops - 1}" in sent, "the last loop's call did not carry its request ID"
        finally:
            os.environ.pop("AIGW_BASE_URL", None)
    return {"ops": loops, "rss_growth_mb": growth, "live_clients": live}


def run(settings: Any) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    factories = {**inbound.groups(), **outbound.groups(long_stream=False)}
    for group, names in MEASURED.items():
        for name in names:
            key = (
                f"{group}_{name}"
                if name != "aigw" or group != "outbound"
                else "outbound_aigw_client"
            )
            made = factories[group][name]()
            if isinstance(made, Skipped):
                results[key] = {"us": None, "instr": None, "skipped": made.reason}
                continue
            try:
                made.check()
                row: dict[str, Any] = {
                    "us": None,
                    "instr": None,
                    **allocations(made, settings.alloc_ops),
                }
                if name != "baseline":
                    ops = (
                        settings.outbound_calls
                        if group == "outbound"
                        else settings.inbound_requests
                    )
                    row["ops"] = ops
                    row["rss_growth_mb"] = rss_growth(made, ops)
                results[key] = row
            finally:
                made.close()
    results["async_loops"] = {"us": None, "instr": None, **loops_in_child(settings)}
    return results


def loops_in_child(settings: Any) -> dict[str, Any]:
    """:func:`async_loops` in a fresh process, where no framework has configured the clients."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("run.py")),
            "--child-loops",
            str(settings.loops),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        return {"error": f"event-loop child failed: {done.stderr.strip()[-500:]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
