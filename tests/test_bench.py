"""The benchmark harness (bench/run.py) keeps working: a smoke run, and its arithmetic."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aigw_middleware import bind_context
from bench import inbound, measure, report

ROOT = Path(__file__).resolve().parents[1]
SMOKE_GROUPS = "django_wsgi,asgi,starlette,flask,outbound,outbound_stream"


def test_smoke_run_checks_and_times_every_variant_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--groups", SMOKE_GROUPS, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert set(results) == set(SMOKE_GROUPS.split(","))
    for group, rows in results.items():
        for name in ("baseline", "aigw"):
            row = rows[name]
            assert row["checked"] is True, (group, name, row)
            assert row["us"] > 0, (group, name, row)
            assert "instr" in row
    assert set(results["outbound"]) >= {
        "baseline",
        "transport",
        "aigw",
        "openai_sdk",
        "aigw_openai",
    }
    assert set(results["outbound_stream"]) == {"baseline", "aigw", "openai_sdk"}
    assert "targets" in done.stdout
    assert json.loads((tmp_path / "bench.meta.json").read_text())["mode"] == "smoke"


def test_instructions_per_operation_are_the_difference_between_n_and_2n_sections() -> None:
    # Section 1: start-up; then per variant: a collection, N ops, a collection, 2N ops.
    totals = [9_000_000, 50, 1_000_300, 40, 2_000_300, 60, 500_300, 70, 1_000_300, 123]

    per_op = measure.instructions_per_op(
        totals, ["baseline", "aigw"], {"baseline": 100, "aigw": 100}
    )

    assert per_op == {"baseline": 10_000.0, "aigw": 5_000.0}


def recording(
    monkeypatch: pytest.MonkeyPatch, *names: str
) -> tuple[dict[str, measure.Variant], list[tuple[str, int]]]:
    """Variants that record each run as (name, n), and the "go" the callgrind child waits for."""
    done: list[tuple[str, int]] = []

    def variant(name: str) -> measure.Variant:
        return measure.Variant(run=lambda n: done.append((name, n)), check=lambda: None)

    monkeypatch.setattr(sys, "stdin", io.StringIO("go\n"))
    return {name: variant(name) for name in names}, done


def test_a_variant_counted_in_several_layouts_gets_one_count_per_round_and_their_mean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variants, done = recording(monkeypatch, "baseline", "aigw", "peer")
    shifted: list[int] = []
    monkeypatch.setattr(measure, "shift_layout", shifted.append)
    order = measure.callgrind_sections(
        variants,
        {"baseline": 4, "aigw": 4, "peer": 8},
        {"baseline": 3, "aigw": 3},
    )

    assert capsys.readouterr().out == measure.READY + "\n"
    assert order == ["baseline", "aigw", "peer", "baseline", "aigw", "baseline", "aigw"]
    assert shifted == [1, 2]
    counted = done[3:]  # after each variant's warm-up
    # Before each count, a few operations of the variant, in the collection's section.
    assert counted[:9] == [
        ("baseline", measure.SWITCH_OPS),
        ("baseline", 4),
        ("baseline", 8),
        ("aigw", measure.SWITCH_OPS),
        ("aigw", 4),
        ("aigw", 8),
        ("peer", measure.SWITCH_OPS),
        ("peer", 8),
        ("peer", 16),
    ]
    assert len(counted) == 3 * len(order)

    # Section 1: start-up; then per count: a collection, N ops, a collection, 2N ops.
    totals = [9_000_000]
    for per_op in (100, 200, 1_000, 110, 210, 90, 190):
        totals += [50, 300 + 4 * per_op, 40, 300 + 8 * per_op]
    ops = {"baseline": 4, "aigw": 4, "peer": 4}
    assert measure.instruction_samples(totals, order, ops) == {
        "baseline": [100.0, 110.0, 90.0],
        "aigw": [200.0, 210.0, 190.0],
        "peer": [1_000.0],
    }
    assert measure.instructions_per_op(totals, order, ops) == {
        "baseline": 100.0,
        "aigw": 200.0,
        "peer": 1_000.0,
    }


def test_a_variant_with_a_short_section_subtracts_s_operations_from_s_plus_n(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variants, done = recording(monkeypatch, "long", "plain")
    order = measure.callgrind_sections(
        variants,
        {"long": 50, "plain": 8},
        short={"long"},
    )

    capsys.readouterr()
    assert measure.short_ops(50) == 10
    assert measure.short_ops(3) == 1
    assert done[2:] == [
        ("long", measure.SWITCH_OPS),
        ("long", 10),
        ("long", 60),
        ("plain", measure.SWITCH_OPS),
        ("plain", 8),
        ("plain", 16),
    ]
    # Section 1: start-up; then per count: a collection, S ops, a collection, S + N ops.
    totals = [
        9_000_000,
        50,
        300 + 10 * 1_000,
        40,
        300 + 60 * 1_000,
        60,
        300 + 8 * 7,
        70,
        300 + 16 * 7,
    ]
    assert measure.instruction_samples(totals, order, {"long": 50, "plain": 8}) == {
        "long": [1_000.0],
        "plain": [7.0],
    }


def test_the_inbound_target_line_gives_the_range_over_layouts() -> None:
    results = {
        "django_asgi": {
            "baseline": {"instr": 1_000_000, "instr_layouts": [999_000, 1_001_000]},
            "aigw": {"instr": 1_020_000, "instr_layouts": [1_021_000, 1_019_000]},
        }
    }
    [(met, text)] = [found for found in report.targets(results) if "django_asgi" in found[1]]
    assert met is True
    assert text == (
        "django_asgi: aigw adds 20,000 instr/request (target <= 25,000), the mean of 2 layouts:"
        " 18,000 to 22,000"
    )


def test_targets_fail_when_aigw_adds_more_than_a_peer_or_the_budget() -> None:
    results = {
        "asgi": {
            "baseline": {"us": 5.0, "instr": 10_000},
            "aigw": {"us": 9.0, "instr": 50_000},
            "asgi_correlation_id": {"us": 7.0, "instr": 30_000},
        },
        "outbound": {
            "baseline": {"us": 100.0, "instr": 1_000_000},
            "transport": {"us": 101.0, "instr": 1_040_000},
        },
    }

    marks = {text: ok for ok, text in report.targets(results)}

    assert marks["asgi: aigw adds 40,000 instr/request (target <= 25,000)"] is False
    assert marks["asgi: aigw adds less than asgi_correlation_id (40,000 vs 20,000)"] is False
    assert marks["outbound: CorrelationTransport vs raw httpx: 1.040x (target <= 1.05x)"] is True
    assert marks["outbound: GatewayClient vs raw httpx <= 1.10x (not measured)"] is None


def test_a_tenant_resolver_passes_only_when_it_ran_on_the_event_loops_thread() -> None:
    app = inbound._asgi_wrap("aigw_async_resolver", inbound._bare_app)
    assert not isinstance(app, measure.Skipped)
    try:
        inbound._asgi_variant(app, inbound._aigw_bound_with_tenant).check()  # the loop's thread
    finally:
        inbound.event_loop().close()
        inbound._loop = None

    # A resolver seen on another thread (a hop) fails the check, and so the target.
    inbound._resolved_on.append(threading.get_ident() + 1)
    try:
        with (
            bind_context(request_id="req-1", tenant="acme", team="ml"),
            pytest.raises(AssertionError, match="another thread"),
        ):
            inbound._aigw_bound_with_tenant(None)
    finally:
        inbound._resolved_on.clear()

    results = {
        "asgi": {
            "aigw": {"instr": 50_000},
            "aigw_resolver": {"instr": 80_000},
            "aigw_async_resolver": {"us": None, "instr": None, "error": "check failed: hop"},
        }
    }
    judged = {
        text.split(" runs")[0]: met for met, text in report.targets(results) if "runs" in text
    }
    assert judged == {"asgi: a sync tenant resolver": True, "asgi: an async tenant resolver": False}


def test_section_totals_read_each_dump_header_in_dump_order(tmp_path: Path) -> None:
    prefix = tmp_path / "callgrind.out"
    for suffix, total in (("42.2", 20), ("42", 99), ("42.1", 10), ("42.10", 30)):
        body = "fn=(1) f\n1 5\n" * 3
        (tmp_path / f"callgrind.out.{suffix}").write_text(
            f"version: 1\ncreator: callgrind\nsummary: {total}\n\n{body}totals: {total}\n"
        )

    assert measure.section_totals(prefix) == [10, 20, 30, 99]
