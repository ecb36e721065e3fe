"""The two clocks: wall time in interleaved rounds, and instructions per operation under callgrind.

A *variant* is something that can do ``n`` operations (``run(n)``) and prove, before it is
timed, that it does the job (``check()``: the ID is bound, echoed and sent).
"""

from __future__ import annotations

import contextvars
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Variant:
    """One way of doing a group's operation."""

    run: Callable[[int], None]
    check: Callable[[], None]
    close: Callable[[], None] = lambda: None
    #: Said next to the numbers (e.g. what the variant does differently).
    note: str = ""


def run_fresh(variant: Variant, n: int) -> None:
    """``variant.run(n)`` in a new, empty :class:`contextvars.Context`.

    Every variant of every group runs in one process; a variable that one leaves set (Django's
    WSGI handler sets three of asgiref's, django-guid sets its own and never resets it) would
    otherwise be in the context of every later variant's requests. What a variable's set and
    reset cost depends on the other variables in the context (their hashes shape its hash
    trie), so each run starts as a request in a server of its own would, from an empty one.
    """
    contextvars.Context().run(variant.run, n)


@dataclass
class Skipped:
    """A variant that cannot run here, and why (a peer not installed, broken on this version)."""

    reason: str


VariantFactory = Callable[[], "Variant | Skipped"]


@dataclass
class Timing:
    """Median microseconds per operation and the spread of the rounds."""

    us: float
    rounds: list[float] = field(default_factory=list)


def per_op_batch(variant: Variant, target_seconds: float = 0.02) -> int:
    """How many operations make one timed batch of about ``target_seconds``."""
    n = 1
    while True:
        started = time.perf_counter()
        run_fresh(variant, n)
        elapsed = time.perf_counter() - started
        if elapsed >= target_seconds / 4 or n >= 100_000:
            return max(1, int(n * target_seconds / max(elapsed, 1e-9)))
        n *= 4


def wall_times(
    variants: dict[str, Variant], *, rounds: int, warmup: int, batch_seconds: float
) -> dict[str, Timing]:
    """Interleaved rounds: each round runs one batch of every variant, in a rotating order.

    Interleaving spreads a slow moment of a shared machine over all variants instead of
    charging it to one; the median of the rounds after ``warmup`` is reported.
    """
    names = list(variants)
    batches = {name: per_op_batch(variants[name], batch_seconds) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            n = batches[name]
            started = time.perf_counter()
            run_fresh(variants[name], n)
            per_op = (time.perf_counter() - started) / n * 1e6
            if index >= warmup:
                samples[name].append(per_op)
    return {name: Timing(statistics.median(s), s) for name, s in samples.items()}


# ---------------------------------------------------------------------------------------------
# Instructions under callgrind
#
# The child process runs under ``valgrind --tool=callgrind --dump-before=getppid``: every call of
# os.getppid() (which nothing else here calls) writes the counters gathered since the previous
# dump and zeroes them. The child marks before and after running each variant N and then 2N
# times; (I(2N) - I(N)) / N is the cost of one operation, without start-up, imports, warm-up
# or the marker's own cost. (Where an operation is long, S and then S + N times: short_ops.)

MARK_FUNCTION = "getppid"
READY = "instrument-now"


def mark() -> None:
    """End the current callgrind section (a no-op outside callgrind)."""
    os.getppid()


def short_ops(n: int) -> int:
    """S = N / 5 (at least 1): the shorter of a count's two sections, where it is not N.

    The section subtracted holds what any section costs whatever its length (the marks, the
    first operations' misses), so it need not be as long as N: with S + N operations after S
    instead of 2N after N, a count takes 1.4N operations instead of 3N. Used only where an
    operation is long and the two read alike (``bench.run.SHORT_SECTIONS`` says where, and
    why not elsewhere).
    """
    return max(1, n // 5)


def callgrind_sections(
    variants: dict[str, Variant],
    ops: dict[str, int],
    rounds: dict[str, int] | None = None,
    short: Collection[str] = (),
) -> list[str]:
    """In the callgrind child: run each variant S and then S + N times between marks (N =
    ``ops[name]``; S = :func:`short_ops` of N for the names in ``short``, else N).

    ``rounds`` counts a variant in more than one round (default 1); before each round after
    the first, :func:`shift_layout` moves where the process's next objects land. Returns the
    variant names in the order counted, once per round; section 3 + 4i holds the i-th's S
    operations and section 5 + 4i its S + N (the sections between hold the collections before
    each).
    """
    order = list(variants)
    rounds = rounds or {}
    for name in order:
        # Warm caches and lazy set-up outside the counts.
        run_fresh(variants[name], max(1, ops[name] // 4))
    # Start-up ran without instrumentation (much faster); the parent switches it on now.
    print(READY, flush=True)
    sys.stdin.readline()
    # Long-lived objects leave the collector's view, and each section starts from an empty
    # young generation, so a full collection does not land in one section and not the other.
    gc.collect()
    gc.freeze()
    mark()
    counted = []
    for round_ in range(max([1, *rounds.values()])):
        if round_:
            shift_layout(round_)  # counted in the next collection's section, not a variant's
        for name in order:
            if round_ >= rounds.get(name, 1):
                continue
            # The first operations after another variant's (or a layout's shift) pay for the
            # switch; they run here, in the collection's section, not in the S section alone.
            run_fresh(variants[name], SWITCH_OPS)
            n = ops[name]
            s = short_ops(n) if name in short else n
            gc.collect()
            mark()
            run_fresh(variants[name], s)
            mark()
            gc.collect()
            mark()
            run_fresh(variants[name], s + n)
            mark()
            counted.append(name)
    return counted


#: Operations of a variant run, uncounted, right before its N section.
SWITCH_OPS = 3

_shifted: list[object] = []


def shift_layout(step: int) -> None:
    """Move where the process's next objects land: keep memory of a size that differs with
    ``step`` in both of Python's allocators, and start and join a thread.

    A count is one sample of the process's memory layout: a ContextVar's hash is its address
    (so whether two share a branch of a context's tree), the free lists of both allocators and
    the collector's generations all follow from it. Django's ASGI handler, which starts a
    thread for each request, read from 21.4k to 24.6k for the same code in six such layouts.
    """
    _shifted.append(bytearray(40_961 * step))
    _shifted.append([object() for _ in range(37 * step)])
    thread = threading.Thread(target=int)
    thread.start()
    thread.join()


def valgrind_argv(out_prefix: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        # Valgrind runs one thread at a time; which waiting thread runs next is otherwise up to
        # the kernel. Django's ASGI handler hands each request's sync steps to a new thread, and
        # with the kernel choosing, its sections moved by 2k to 3k per request; with threads
        # taken in turn, by under 1k. Single-threaded groups count the same either way.
        "--fair-sched=yes",
        f"--dump-before={MARK_FUNCTION}",
        f"--callgrind-out-file={out_prefix}.%p",
        "--quiet",
    ]


def run_counted(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run a callgrind child; switch instrumentation on when it is ready. Returns its output."""
    child = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    output = []
    try:
        for line in child.stdout:
            if line.strip() == READY:
                subprocess.run(
                    ["callgrind_control", "--instr=on", str(child.pid)],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
                child.stdin.write("go\n")
                child.stdin.flush()
            else:
                output.append(line)
        child.wait(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    if child.returncode != 0:
        raise RuntimeError(f"callgrind child failed ({child.returncode}): {stderr.strip()[-800:]}")
    return "".join(output)


def section_totals(out_prefix: Path) -> list[int]:
    """The instruction count of each dumped section, in dump order (the final dump last)."""
    parts: list[tuple[int, int]] = []
    for path in out_prefix.parent.glob(out_prefix.name + ".*"):
        suffix = path.name[len(out_prefix.name) + 1 :]
        _pid, _, part = suffix.partition(".")
        order = int(part) if part else 1_000_000  # the dump at exit comes last
        # The total is in the header: read up to it, not the profile (megabytes, parsed in a
        # thread of the parent while its memory group measures RSS under --quick).
        with path.open(errors="replace") as lines:
            for line in lines:
                if line.startswith("summary:"):
                    parts.append((order, int(line.split()[1])))
                    break
    return [count for _, count in sorted(parts)]


def instruction_samples(
    totals: list[int], order: list[str], ops: dict[str, int]
) -> dict[str, list[float]]:
    """Per-operation instructions of each variant from the section totals, one per round."""
    result: dict[str, list[float]] = {}
    for index, name in enumerate(order):
        shorter, longer = totals[2 + 4 * index], totals[4 + 4 * index]
        result.setdefault(name, []).append((longer - shorter) / ops[name])
    return result


def instructions_per_op(
    totals: list[int], order: list[str], ops: dict[str, int]
) -> dict[str, float]:
    """Per-operation instructions of each variant from the section totals (the mean of its
    rounds)."""
    samples = instruction_samples(totals, order, ops)
    return {name: statistics.fmean(values) for name, values in samples.items()}
