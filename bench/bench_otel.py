"""What the OpenTelemetry support costs an app that does not use it: instructions and wall time.

Each case runs in an interpreter of its own, so that "not installed" really cannot import
``opentelemetry``:

- ``absent``: the OpenTelemetry code path taken out: every hook of ``aigw_middleware._otel``
  replaced, where the package calls it, by an empty function (the baseline);
- ``none``: opentelemetry-api not installed (its import blocked);
- ``api``: opentelemetry-api installed, no SDK configured (no tracer provider);
- ``sdk_off``: the SDK's tracer provider set, ``otel_spans=False``;
- ``sdk``: the SDK's tracer provider set, a span per call (recorded, exported nowhere): what
  using it costs, for comparison.

Each case runs the operations of bench/run.py's groups, checked first (the gateway receives the
request ID, tenant and team): one chat call through ``GatewayClient`` (``client``), the same
with the README's logging set-up (``client_logging``), a 50-chunk stream (``stream``), a chat
call through the OpenAI SDK wrapper (``openai``), and one request through the ASGI middleware
(``asgi``) and the Django middleware under WSGI (``django``).

Instructions per operation come from a callgrind child per case, (I(2N) - I(N)) / N as in
bench/measure.py; wall time from interleaved rounds: one long-lived worker per case, the
parent asking each in turn for a batch of each operation, so a slow moment of a shared machine
falls on every case alike. Prints a table and writes ``bench/results/otel.json``.

    .venv/bin/python bench/bench_otel.py                  # both clocks (a few minutes)
    .venv/bin/python bench/bench_otel.py --no-callgrind   # wall time only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    # Run as a script: import the bench package from the repository root, not this folder.
    sys.path[0] = str(ROOT)

CASES = {
    "absent": "OpenTelemetry code path taken out",
    "none": "opentelemetry-api not installed",
    "api": "opentelemetry-api, no SDK configured",
    "sdk_off": "SDK configured, otel_spans=False",
    "sdk": "SDK configured, a span per call",
}
BASELINE = "absent"
#: Operation -> (bench group, variant) of bench/run.py.
OPERATIONS = {
    "client": ("outbound", "aigw"),
    "client_logging": ("outbound", "aigw_logging"),
    "stream": ("outbound_stream", "aigw"),
    "openai": ("outbound", "aigw_openai"),
    "asgi": ("asgi", "aigw"),
    "django": ("django_wsgi", "aigw"),
}
#: Operations that cost many times a plain call run fewer times under callgrind.
CALLGRIND_DIVISOR = {"stream": 4, "openai": 4}


# ---------------------------------------------------------------------------------------------
# In a case's own interpreter


def _nothing(*args: object, **kwargs: object) -> None:
    return None


def take_out_the_otel_code_path() -> None:
    """Every module that calls ``_otel`` gets empty functions in its place (each returns None,
    which is what the hooks return when OpenTelemetry is not there)."""
    import types

    from aigw_middleware import _attempts, _otel, _streaming, inbound, log, openai, transport

    hooks = {
        name: _nothing
        for name, value in vars(_otel).items()
        if isinstance(value, types.FunctionType) and not name.startswith("_")
    }
    for module in (_attempts, _streaming, inbound, log, openai, transport):
        module._otel = types.SimpleNamespace(**hooks)  # type: ignore[attr-defined]


def set_up_case(case: str) -> dict[str, Any]:
    """Prepare this interpreter for ``case``; return the checked operations as bench Variants."""
    if case in ("absent", "none"):
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # its import fails
    from bench import inbound, outbound
    from bench.measure import Skipped

    if case == "absent":
        take_out_the_otel_code_path()
    if case.startswith("sdk"):
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # spans recorded, exported nowhere
    if case == "sdk_off":
        plain_config = outbound._config
        outbound._config = lambda: plain_config().replace(otel_spans=False)
    from aigw_middleware import _otel

    expect_api = case in ("api", "sdk_off", "sdk")
    assert (_otel._api() is not None) == expect_api, f"{case}: opentelemetry importable?"
    groups = inbound.groups()
    groups.update(outbound.groups(long_stream=False))
    variants = {}
    for name, (group, variant) in OPERATIONS.items():
        made = groups[group][variant]()
        if isinstance(made, Skipped):
            raise RuntimeError(f"{name}: {made.reason}")
        made.check()
        variants[name] = made
    return variants


def child_callgrind(case: str, ops: int) -> None:
    from bench import measure

    variants = set_up_case(case)
    counts = {name: max(1, ops // CALLGRIND_DIVISOR.get(name, 1)) for name in variants}
    order = measure.callgrind_sections(variants, counts)
    print(json.dumps({"order": order, "ops": counts}))


def child_worker(case: str, batch_seconds: float) -> None:
    """Answer ``NAME`` lines with the microseconds per operation of one batch of NAME."""
    from bench import measure

    variants = set_up_case(case)
    batches = {name: measure.per_op_batch(v, batch_seconds) for name, v in variants.items()}
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        started = time.perf_counter()
        measure.run_fresh(variants[name], batches[name])
        print((time.perf_counter() - started) / batches[name] * 1e6, flush=True)
    for variant in variants.values():
        variant.close()


# ---------------------------------------------------------------------------------------------
# The parent


def _argv(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def instructions(case: str, ops: int) -> dict[str, float]:
    from bench import measure

    with tempfile.TemporaryDirectory(prefix="aigw-otel-callgrind-") as folder:
        prefix = Path(folder) / "callgrind.out"
        argv = measure.valgrind_argv(prefix) + _argv("--child-callgrind", case, "--ops", str(ops))
        env = {**os.environ, "DEBUGINFOD_URLS": "", "PYTHONHASHSEED": "0"}
        output = measure.run_counted(argv, env, ROOT, timeout=3600)
        reported = json.loads(output.strip().splitlines()[-1])
        totals = measure.section_totals(prefix)
        return measure.instructions_per_op(totals, reported["order"], reported["ops"])


def wall_times(rounds: int, warmup: int, batch_seconds: float) -> dict[str, dict[str, list[float]]]:
    """Microseconds per operation of each round, by case and operation."""
    workers = {
        case: subprocess.Popen(
            _argv("--child-worker", case, "--batch-seconds", str(batch_seconds)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for case in CASES
    }
    samples: dict[str, dict[str, list[float]]] = {c: {op: [] for op in OPERATIONS} for c in CASES}
    try:
        for case, worker in workers.items():
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {case} worker failed to start")
        cases = list(CASES)
        for index in range(warmup + rounds):
            shift = index % len(cases)
            for case in cases[shift:] + cases[:shift]:
                for op in OPERATIONS:
                    per_op = _ask(workers[case], op)
                    if index >= warmup:
                        samples[case][op].append(per_op)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(timeout=60)
    return samples


def _ask(worker: subprocess.Popen[str], op: str) -> float:
    assert worker.stdin is not None
    assert worker.stdout is not None
    worker.stdin.write(op + "\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def table(
    title: str, unit: str, values: dict[str, dict[str, float]], fmt: Callable[[float], str]
) -> str:
    base = values[BASELINE]
    lines = [f"{title} ({unit}; in brackets: against '{BASELINE}')"]
    lines.append(f"{'case':<38}" + "".join(f"{op:>22}" for op in OPERATIONS))
    for case, label in CASES.items():
        cells = []
        for op in OPERATIONS:
            value, ratio = values[case][op], values[case][op] / base[op]
            cells.append(f"{fmt(value)} ({ratio - 1:+.2%})".rjust(22))
        lines.append(f"{label:<38}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20, help="N under callgrind (default 20)")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (default 9)")
    parser.add_argument("--no-callgrind", action="store_true", help="wall time only")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "otel.json")
    parser.add_argument("--child-callgrind", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--child-worker", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--batch-seconds", type=float, default=0.03, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_callgrind:
        child_callgrind(args.child_callgrind, args.ops)
        return
    if args.child_worker:
        child_worker(args.child_worker, args.batch_seconds)
        return

    import opentelemetry.version

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "opentelemetry_api": opentelemetry.version.__version__,
        "cases": CASES,
        "operations": {op: f"{group}/{variant}" for op, (group, variant) in OPERATIONS.items()},
    }
    started = time.monotonic()
    samples = wall_times(args.rounds, warmup=2, batch_seconds=args.batch_seconds)
    wall = {
        statistic: {c: {op: pick(s) for op, s in ops.items()} for c, ops in samples.items()}
        for statistic, pick in (("median", statistics.median), ("minimum", min))
    }
    report["wall"] = {"rounds": args.rounds, "us_per_op": wall, "samples": samples}
    for statistic, values in wall.items():
        title = f"wall time, {statistic} of {args.rounds} interleaved rounds"
        print(table(title, "us/op", values, lambda v: f"{v:.1f}"))
        print()
    if not args.no_callgrind and shutil.which("valgrind"):
        # Two children at a time: the counts do not depend on the machine's load.
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {case: pool.submit(instructions, case, args.ops) for case in CASES}
            counts = {case: future.result() for case, future in futures.items()}
        report["instructions"] = {"ops": args.ops, "per_op": counts}
        print()
        print(
            table("instructions under callgrind", "k instr/op", counts, lambda v: f"{v / 1e3:.1f}k")
        )
    elif not args.no_callgrind:
        print("valgrind is not on PATH: instructions are not counted")
    report["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nwritten: {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}"
    )


if __name__ == "__main__":
    main()
