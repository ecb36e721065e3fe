"""Per-call cost of the OpenTelemetry support: not installed, installed without an SDK, with one.

Each case runs in its own interpreter (so "not installed" really cannot import opentelemetry),
in-process against ``httpx.MockTransport``, and prints microseconds per call and the ratio to
the same call without OpenTelemetry. Writes ``bench/results/otel.json``.

    .venv/bin/python bench/bench_otel.py [--calls 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "none": "OpenTelemetry not installed",
    "api": "opentelemetry-api, no SDK",
    "sdk-off": "SDK, otel_spans=False",
    "sdk": "SDK, a span per call",
}
BASELINE = "none"


def run_case(case: str, calls: int, rounds: int) -> float:
    """Median microseconds per ``chat.completions.create`` in this interpreter, for ``case``."""
    if case == "none":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
    import httpx

    from aigw_middleware import GatewayClient, GatewayConfig, bind_context

    if case.startswith("sdk"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # recording spans, exported nowhere

    answer = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    config = GatewayConfig(base_url="http://gateway.bench/v1", otel_spans=case != "sdk-off")
    client = GatewayClient(config, transport=transport)
    messages = [{"role": "user", "content": "hi"}]

    def call() -> None:
        client.chat.completions.create(model="m", messages=messages)

    per_call = []
    with bind_context(request_id="bench-1", tenant="acme", team="ml"):
        for _ in range(500):
            call()
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                call()
            per_call.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.calls, args.rounds)))
        return
    results = {}
    for case in CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                case,
                f"--calls={args.calls}",
                f"--rounds={args.rounds}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        results[case] = json.loads(out.stdout)
    base = results[BASELINE]
    print(f"{'GatewayClient.chat.completions.create':<40} {'us/call':>9} {'ratio':>7}")
    for case, label in CASES.items():
        print(f"{label:<40} {results[case]:>9.1f} {results[case] / base:>6.2f}x")
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    report = {
        "python": platform.python_version(),
        "calls": args.calls,
        "rounds": args.rounds,
        "us_per_call": results,
        "ratio_to_no_otel": {case: results[case] / base for case in CASES},
    }
    (out_dir / "otel.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
