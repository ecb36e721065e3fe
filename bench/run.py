"""Benchmarks: aigw-middleware side by side with plain frameworks and the peer libraries.

    scripts/bench                  # everything, both clocks (about 15 minutes on 2 cores)
    scripts/bench --quick          # fewer rounds and requests: under two minutes
    scripts/bench --no-callgrind   # wall time only
    scripts/bench --json out.json  # {group: {variant: {"us": median, "instr": count, ...}}}

Each variant is checked before it is timed: the request ID is bound where application code
reads it, echoed on the response, and sent to the gateway. Wall time comes from interleaved
rounds in one process (median after warm-up); instructions per operation come from a child
process under callgrind, (I(2N) - I(N)) / N, or (I(S + N) - I(S)) / N for SHORT_SECTIONS, which
removes start-up and import costs.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    # Run as a script: import the bench package from the repository root, not this folder.
    sys.path[0] = str(ROOT)

from bench import inbound, measure, outbound, report  # noqa: E402
from bench.measure import Skipped, Variant, VariantFactory  # noqa: E402

OPENAI3_PYTHON = ROOT / ".venv-openai3" / "bin" / "python"
OPENAI3_GROUP = "outbound_openai3"

Results = dict[str, dict[str, dict[str, Any]]]


class Settings:
    """How much to measure: the full run, --quick, or --smoke (for the test suite)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        full, quick = mode == "full", mode == "quick"
        self.rounds = 15 if full else 7 if quick else 2
        self.warmup = 3 if full else 2 if quick else 1
        self.batch_seconds = 0.03 if full else 0.015 if quick else 0.003
        self.callgrind_ops = 100 if full else 20
        self.layouts = 4 if full else 3  # see COUNTED_IN_LAYOUTS
        self.long_stream = full
        # The baseline and the shared client, whose p99 are compared, loaded at the same time:
        # under --quick, p99 of 300 requests (their third slowest) moved by 20% from run to
        # run. The other e2e variants are compared on throughput only, with room to spare.
        self.e2e_requests = 5000 if full else 1000 if quick else 40
        self.e2e_other_requests = 2000 if full else 200 if quick else 40
        # Connections per server. At 8 the two cores were saturated (load generator, servers
        # and gateway): req/s fell, and p99 measured the run queue, where one stall met every
        # request in flight (FastAPI's p99 read 0.53x to 1.78x in six runs of the same code).
        self.e2e_concurrency = 2
        # Seconds per e2e variant at most: a slow variant (a new httpx client per request
        # loads the CA bundle each time) ends with fewer requests instead of holding the run.
        # Under --quick the other variants get 1 s: the slowest makes about 20 requests, its
        # throughput a tenth of the shared client's, where the target is two thirds.
        self.e2e_seconds = 60.0 if full else 12.0 if quick else 30.0
        self.e2e_other_seconds = 30.0 if full else 1.0 if quick else 30.0
        self.burst = 1000 if mode != "smoke" else 100
        # Left out of --quick: httpx's default pool (about 50 s to fail the burst) and our
        # AsyncOpenAI's burst (8 s; the target compares AsyncGatewayClient with the SDK's).
        self.burst_full = full
        # Under --quick 1,000: a Django ASGI request takes about 4 ms (a new thread for each
        # request's sync steps), and the callgrind children share the cores meanwhile.
        self.inbound_requests = 50_000 if full else 1_000 if quick else 300
        self.outbound_calls = 20_000 if full else 2_000 if quick else 200
        self.loops = 200 if mode != "smoke" else 20
        self.alloc_ops = 1000 if full else 500 if quick else 50
        #: Only these variants of each group (None: all), e.g. while optimising one path.
        self.variants: set[str] | None = None


def variant_groups(settings: Settings) -> dict[str, dict[str, VariantFactory]]:
    groups = inbound.groups()
    groups.update(outbound.groups(long_stream=settings.long_stream))
    return {group: _chosen(factories, settings) for group, factories in groups.items()}


def _chosen(factories: dict[str, VariantFactory], settings: Settings) -> dict[str, VariantFactory]:
    if settings.variants is None:
        return factories
    return {name: make for name, make in factories.items() if name in settings.variants}


def build(
    factories: dict[str, VariantFactory], results: dict[str, dict[str, Any]]
) -> dict[str, Variant]:
    """Make and check every variant; the skipped and failed ones are recorded, not timed."""
    ready = {}
    for name, make in factories.items():
        try:
            made = make()
        except Exception as exc:
            results[name] = {"us": None, "instr": None, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if isinstance(made, Skipped):
            results[name] = {"us": None, "instr": None, "skipped": made.reason}
            continue
        try:
            made.check()
        except AssertionError as exc:
            made.close()
            results[name] = {"us": None, "instr": None, "error": f"check failed: {exc}"}
            continue
        results[name] = {"us": None, "instr": None, "checked": True}
        if made.note:
            results[name]["note"] = made.note
        ready[name] = made
    return ready


def time_group(
    factories: dict[str, VariantFactory], settings: Settings
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    variants = build(factories, results)
    try:
        if variants:
            timings = measure.wall_times(
                variants,
                rounds=settings.rounds,
                warmup=settings.warmup,
                batch_seconds=settings.batch_seconds,
            )
            for name, timing in timings.items():
                results[name]["us"] = round(timing.us, 3)
    finally:
        for variant in variants.values():
            variant.close()
    return results


# ---------------------------------------------------------------------------------------------
# Child processes: callgrind, and the openai 3.x venv


def child_callgrind(groups: list[str], ops: int, settings: Settings) -> None:
    """Under callgrind: make, check and run the groups' variants between section marks."""
    variants: dict[str, Variant] = {}
    results: dict[str, dict[str, Any]] = {}
    for group in groups:
        made = build(_factories(group, settings), results.setdefault(group, {}))
        variants.update({f"{group}/{name}": variant for name, variant in made.items()})
    counts = {key: callgrind_ops(key, ops) for key in variants}
    rounds = {key: settings.layouts for key in variants if key in COUNTED_IN_LAYOUTS}
    short = {key for key in variants if key.split("/", 1)[0] in SHORT_SECTIONS}
    order = measure.callgrind_sections(variants, counts, rounds, short)
    print(json.dumps({"order": order, "ops": counts, "results": results}))


#: Counted in a callgrind child of their own: Django's ASGI handler hands each request's sync
#: steps to another thread, and what the process allocates then depends on how the threads
#: happen to interleave. Counted in the child of the other inbound groups, it moved their
#: counts by up to 2k from one run to the next, and its own count with its place among them
#: (22.2k to 25.1k for the same code).
COUNTED_ALONE = {"django_asgi"}

#: Groups counted with a short S section (measure.short_ops), where it reads as N and 2N do and
#: saves the most: Django ASGI, whose request is 1.4M instructions under valgrind and whose
#: layouts were half of what --quick waited for (over three layouts at N = 50, what ours adds
#: read 22.4k with S = N, 22.9k with S = 25 and 22.8k with S = 10, in 47 s, 33 s and 25 s); the
#: bare ASGI app and Starlette, counted 200 times (ours adds 23,757 against 23,901 and 23,795
#: against 23,787); the streams, whose SDK variant is 42M instructions a call (within 0.6%); and
#: the openai 3.x calls (the wrapper 1.011x the SDK against 1.010x). Not Django WSGI and Flask,
#: whose additions read 3k less with S, nor the outbound group, whose logging variant read 5%
#: more with S = 1 than with S = N = 5 (891k, 911k at S = 3, 939k at S = 1), for a cause not
#: found.
SHORT_SECTIONS = {"django_asgi", "asgi", "starlette", "outbound_stream", OPENAI3_GROUP}

#: Counted in Settings.layouts memory layouts, and the mean kept (measure.shift_layout). Counted
#: once, the same code read from 21.4k to 24.6k over six layouts (one process each, a request
#: thread each, as in a server); with the requests of a run sharing one thread (see
#: inbound._django_asgi), four layouts in one process read from 22.2k to 24.2k, and two whole
#: runs gave the same four to within 0.3k. Its peers add seven to twenty-five times as much
#: and are counted once. N for each layout is LAYOUT_OPS, or the run's N when it is larger.
COUNTED_IN_LAYOUTS = {"django_asgi/baseline", "django_asgi/aigw"}


#: Groups whose operation is long get fewer operations under callgrind (N = ops // divisor):
#: the count is exact either way, and a 2,000-chunk answer through the SDK is a billion
#: instructions.
CALLGRIND_DIVISOR = {
    # Django ASGI's peers (the baseline and ours are counted in layouts, see LAYOUT_OPS): a
    # request there hands its sync steps to another thread, slow under valgrind, and the peers
    # add seven to twenty-five times what ours does.
    "django_asgi": 2,
    "outbound": 4,
    OPENAI3_GROUP: 4,
    "outbound_stream": 10,
    "outbound_stream_long": 1000,
}


#: The two shortest inbound operations get at least this many: one collection of the young
#: generation more in the 2N section than in the N section weighs a few thousand
#: instructions, a tenth of a request's cost through a middleware when N is 20. The openai 3.x
#: SDK calls get 20 under --quick as well: at 5, the SDK's count read 4,885k against 4,998k at
#: 20 and 25, which put our wrapper at 1.037x its cost instead of 1.010x. Its child runs beside
#: the wall-time rounds, so --quick takes no longer.
CALLGRIND_FLOOR = {"asgi": 200, "starlette": 200, OPENAI3_GROUP: 20}

#: N in each layout for COUNTED_IN_LAYOUTS at least: at N = 20 what aigw added under Django
#: ASGI had a standard deviation of 3k over eight layouts, at 100 under 1k. The full run counts
#: 100; 50 keeps --quick within two minutes.
LAYOUT_OPS = 50


def callgrind_ops(key: str, ops: int) -> int:
    """N for ``key`` ("group/variant") when the run's N is ``ops``."""
    if key in COUNTED_IN_LAYOUTS:
        return max(ops, LAYOUT_OPS)
    group = key.split("/", 1)[0]
    return max(1, ops // CALLGRIND_DIVISOR.get(group, 1), CALLGRIND_FLOOR.get(group, 0))


def child_wall(group: str, settings: Settings) -> None:
    print(json.dumps(time_group(_factories(group, settings), settings)))


def _factories(group: str, settings: Settings) -> dict[str, VariantFactory]:
    if group == OPENAI3_GROUP:
        return _chosen(outbound.openai3_group(), settings)
    return variant_groups(settings)[group]


def _child_argv(python: Path | str, *args: str) -> list[str]:
    return [str(python), str(Path(__file__).resolve()), *args]


def callgrind_groups(
    groups: list[str], settings: Settings, python: Path | str
) -> dict[str, dict[str, list[float]]] | str:
    """Instructions per operation of each variant of ``groups`` (one per layout it is counted
    in, see COUNTED_IN_LAYOUTS), or why they are missing."""
    with tempfile.TemporaryDirectory(prefix="aigw-callgrind-") as folder:
        prefix = Path(folder) / "callgrind.out"
        argv = measure.valgrind_argv(prefix) + _child_argv(
            python,
            "--child-callgrind",
            ",".join(groups),
            "--ops",
            str(settings.callgrind_ops),
            "--mode",
            settings.mode,
            *(["--variants", ",".join(sorted(settings.variants))] if settings.variants else []),
        )
        env = {**os.environ, "DEBUGINFOD_URLS": "", "PYTHONHASHSEED": "0"}
        began = time.monotonic()
        try:
            output = measure.run_counted(argv, env, ROOT, timeout=3600)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            return str(exc)
        print(f"   counted {','.join(groups)} in {time.monotonic() - began:.0f} s", flush=True)
        reported = json.loads(output.strip().splitlines()[-1])
        totals = measure.section_totals(prefix)
        counts: dict[str, dict[str, list[float]]] = {}
        samples = measure.instruction_samples(totals, reported["order"], reported["ops"])
        for key, values in samples.items():
            group, name = key.split("/", 1)
            counts.setdefault(group, {})[name] = values
        return counts


def openai3_wall(settings: Settings) -> dict[str, dict[str, Any]] | str:
    if not OPENAI3_PYTHON.exists():
        return "no .venv-openai3 (scripts/setup.d/30-openai3.sh creates it)"
    done = subprocess.run(
        _child_argv(OPENAI3_PYTHON, "--child-wall", OPENAI3_GROUP, "--mode", settings.mode),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if done.returncode != 0:
        return f"openai 3.x child failed: {done.stderr.strip()[-500:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in (
        "aigw-middleware",
        "django",
        "flask",
        "starlette",
        "fastapi",
        "httpx",
        "openai",
        "gunicorn",
        "uvicorn",
        "django-guid",
        "django-log-request-id",
        "asgi-correlation-id",
        "flask-log-request-id",
    ):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    valgrind = shutil.which("valgrind")
    valgrind_version = (
        subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
        if valgrind
        else None
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "valgrind": valgrind_version,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and requests (< 2 minutes)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few operations each, no callgrind (tests)"
    )
    parser.add_argument("--no-callgrind", action="store_true", help="wall time only")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the variant groups as Markdown tables")
    parser.add_argument("--groups", help="comma-separated groups to run (default: all)")
    parser.add_argument(
        "--variants", help="comma-separated variants to run in each group (default: all)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions per inbound path"
    )
    parser.add_argument("--child-callgrind", help=argparse.SUPPRESS)
    parser.add_argument("--child-wall", help=argparse.SUPPRESS)
    parser.add_argument("--child-loops", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ops", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    mode = args.mode or ("smoke" if args.smoke else "quick" if args.quick else "full")
    settings = Settings(mode)
    if args.variants:
        settings.variants = set(args.variants.split(","))

    if args.child_callgrind:
        settings.callgrind_ops = args.ops
        child_callgrind(args.child_callgrind.split(","), args.ops, settings)
        return 0
    if args.child_loops:
        from bench import memory

        try:
            print(json.dumps(memory.async_loops(args.child_loops)))
        except AssertionError as exc:
            print(json.dumps({"error": f"check failed: {exc}"}))
        return 0
    if args.child_wall:
        child_wall(args.child_wall, settings)
        return 0

    from bench import memory, profiling

    started = time.monotonic()
    wanted = set(args.groups.split(",")) if args.groups else None

    def wants(group: str) -> bool:
        return wanted is None or group in wanted

    def phase(name: str) -> None:
        print(f"== {name} (at {time.monotonic() - started:.0f} s)", flush=True)

    callgrind = not (args.no_callgrind or args.smoke)
    if callgrind and shutil.which("valgrind") is None:
        print("valgrind is not on PATH: instructions are not counted (scripts/bench installs it)")
        callgrind = False

    results: Results = {}
    groups = {g: f for g, f in variant_groups(settings).items() if wants(g)}
    # The callgrind children (Django ASGI's, the other inbound groups', the outbound groups' and
    # the openai 3.x calls') share the two cores, two at a time; counts do not depend on what
    # else the machine does. --quick runs them during the wall-time rounds, the full run after.
    # Wall-time clocks whose number stands alone (the burst, the e2e latencies) run before.
    pool = ThreadPoolExecutor(max_workers=2)
    counted: list[Any] = []

    def count() -> None:
        inbound_names = inbound.groups()
        own = [[g] for g in groups if g in COUNTED_ALONE]
        inbound_groups = [g for g in groups if g in inbound_names and g not in COUNTED_ALONE]
        outbound_groups = [g for g in groups if g not in inbound_names]
        for part in (*own, inbound_groups, outbound_groups):
            if part:
                counted.append(pool.submit(callgrind_groups, part, settings, sys.executable))
        if wants(OPENAI3_GROUP) and OPENAI3_PYTHON.exists():
            counted.append(pool.submit(callgrind_groups, [OPENAI3_GROUP], settings, OPENAI3_PYTHON))

    if wants("concurrency"):
        from bench import e2e

        # First, on a machine where nothing else of this run is working yet: a burst's wall
        # time is one number, with no baseline in the same rounds to absorb a busy core.
        phase("concurrency")
        results["concurrency"] = e2e.burst(settings)
    if wants("e2e"):
        from bench import e2e

        # Before the callgrind children start too: p99 on a machine whose two cores were also
        # running valgrind measured valgrind's share of them (FastAPI 1.83x in one such run).
        phase("e2e (loopback servers)")
        results["e2e"] = e2e.run(settings)
    if callgrind and mode != "full":
        count()
    for group, factories in groups.items():
        phase(group)
        results[group] = time_group(factories, settings)
    if wants(OPENAI3_GROUP) and mode != "smoke":
        phase(OPENAI3_GROUP)
        wall = openai3_wall(settings)
        results[OPENAI3_GROUP] = (
            wall
            if isinstance(wall, dict)
            else {"baseline": {"us": None, "instr": None, "skipped": wall}}
        )

    if args.profile:
        profiling.print_profiles(settings)

    if wants("memory"):
        phase("memory")
        results["memory"] = memory.run(settings)

    if callgrind and mode == "full":
        phase("instructions (callgrind)")
        count()
    for future in counted:
        counts = future.result()
        if isinstance(counts, str):
            print(f"   {counts}")
            continue
        for group, rows in counts.items():
            for name, values in rows.items():
                row = results.setdefault(group, {}).setdefault(name, {"us": None})
                row["instr"] = round(statistics.fmean(values))
                if len(values) > 1:
                    row["instr_layouts"] = [round(value) for value in values]
    pool.shutdown()

    elapsed = time.monotonic() - started
    meta = {
        "mode": mode,
        "seconds": round(elapsed, 1),
        "machine": machine(),
        "versions": versions(),
    }
    print()
    print(report.render(results, meta))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
        # The machine and versions go beside it, so that the results file has only groups.
        meta_path = args.json.with_name(args.json.stem + ".meta.json")
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"written: {args.json} and {meta_path}")
    if args.markdown:
        args.markdown.write_text(report.markdown(results))
        print(f"written: {args.markdown}")
    failed = [
        f"{group}.{name}: {row['error']}"
        for group, rows in results.items()
        for name, row in rows.items()
        if isinstance(row, dict) and "error" in row
    ]
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
