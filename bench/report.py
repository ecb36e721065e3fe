"""The results as tables, and the issue's targets with a pass or fail mark each."""

from __future__ import annotations

from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]

INBOUND = ("django_wsgi", "django_asgi", "asgi", "starlette", "flask")
INBOUND_BUDGET = 25_000


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def _adds(value: float | None, base: float | None, digits: int = 1) -> str:
    if value is None or base is None:
        return "-"
    delta = value - base
    return ("+" if delta >= 0 else "") + _num(delta, digits)


def variant_table(group: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    base = rows.get("baseline", {})
    base_us, base_instr = base.get("us"), base.get("instr")
    lines = [
        f"{group}",
        f"  {'variant':24} {'µs/op':>9} {'x base':>7} {'adds µs':>9} {'instr/op':>10} {'x base':>7} {'adds instr':>11}  note",
    ]
    for name, row in rows.items():
        note = _note(row)
        us, instr = row.get("us"), row.get("instr")
        lines.append(
            f"  {name:24} {_num(us):>9} {_ratio(us, base_us):>7} {_adds(us, base_us):>9}"
            f" {_num(instr, 0):>10} {_ratio(instr, base_instr):>7} {_adds(instr, base_instr, 0):>11}  {note}"
        )
    return lines


def e2e_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "e2e (loopback: load generator -> server -> FakeGateway)",
        f"  {'variant':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  note",
    ]
    for name, row in rows.items():
        note = _note(row)
        lines.append(
            f"  {name:34} {_num(row.get('rps')):>8} {_num(_ms(row.get('us')), 2):>8}"
            f" {_num(_ms(row.get('p99_us')), 2):>8} {row.get('errors', '-'):>7}  {note}"
        )
    return lines


def _layouts(rows: dict[str, Any]) -> str:
    """What aigw added in each memory layout, when the group was counted in more than one."""
    base = rows.get("baseline", {}).get("instr_layouts")
    aigw = rows.get("aigw", {}).get("instr_layouts")
    if not base or not aigw or len(base) != len(aigw):
        return ""
    added = [ours - theirs for ours, theirs in zip(aigw, base, strict=True)]
    return f", the mean of {len(added)} layouts: {min(added):,} to {max(added):,}"


def _note(row: dict[str, Any]) -> str:
    """Why a variant has no figures, or what to know about them."""
    return str(row.get("skipped") or row.get("error") or row.get("note") or "")


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1000


def burst_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "concurrency (one event loop, concurrent calls to a loopback gateway)",
        f"  {'variant':30} {'calls':>6} {'seconds':>8} {'ok':>6} {'PoolTimeout':>12} {'other errors':>13}  note",
    ]
    for name, row in rows.items():
        note = _note(row)
        seconds = None if row.get("us") is None else row["us"] / 1e6
        lines.append(
            f"  {name:30} {row.get('calls', '-'):>6} {_num(seconds, 2):>8} {row.get('ok', '-'):>6}"
            f" {row.get('pool_timeouts', '-'):>12} {row.get('other_errors', '-'):>13}  {note}"
        )
    return lines


def memory_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "memory (tracemalloc per operation after warm-up; RSS over many operations)",
        f"  {'variant':34} {'peak B/op':>10} {'retained B/op':>14} {'aigw retained':>14} {'ops':>7} {'RSS +MB':>8}  note",
    ]
    for name, row in rows.items():
        note = _note(row)
        lines.append(
            f"  {name:34} {_num(row.get('transient_bytes'), 0):>10} {_num(row.get('retained_bytes_per_op'), 1):>14}"
            f" {_num(row.get('aigw_retained_bytes_per_op'), 1):>14} {row.get('ops', '-'):>7}"
            f" {_num(row.get('rss_growth_mb'), 2):>8}  {note}"
        )
    return lines


def targets(results: Results) -> list[tuple[bool | None, str]]:
    """The issue's targets, each with True (met), False (missed) or None (not measured)."""
    found: list[tuple[bool | None, str]] = []

    def value(group: str, variant: str, key: str) -> float | None:
        row = results.get(group, {}).get(variant, {})
        number = row.get(key)
        return float(number) if isinstance(number, (int, float)) else None

    for group in INBOUND:
        if group not in results:
            continue
        base, aigw = value(group, "baseline", "instr"), value(group, "aigw", "instr")
        if base is None or aigw is None:
            found.append(
                (None, f"{group}: aigw adds <= {INBOUND_BUDGET:,} instr/request (no counts)")
            )
            continue
        adds = aigw - base
        found.append(
            (
                adds <= INBOUND_BUDGET,
                f"{group}: aigw adds {adds:,.0f} instr/request (target <= {INBOUND_BUDGET:,})"
                + _layouts(results[group]),
            )
        )
        peers = {
            name: value(group, name, "instr") - base  # type: ignore[operator]
            for name in results[group]
            if name != "baseline"
            and not name.startswith("aigw")
            and value(group, name, "instr") is not None
        }
        for name, peer_adds in peers.items():
            found.append(
                (
                    adds < peer_adds,
                    f"{group}: aigw adds less than {name} ({adds:,.0f} vs {peer_adds:,.0f})",
                )
            )

    plain = value("asgi", "aigw", "instr")
    for variant, kind in (("aigw_resolver", "a sync"), ("aigw_async_resolver", "an async")):
        # The variant's check fails when the resolver runs on a thread other than the loop's.
        row = results.get("asgi", {}).get(variant)
        if row is None:
            continue
        resolver = value("asgi", variant, "instr")
        cost = (
            "" if resolver is None or plain is None else f", adding {resolver - plain:,.0f} instr"
        )
        found.append(
            (
                "error" not in row,
                f"asgi: {kind} tenant resolver runs on the event loop's thread, no thread hop"
                f"{cost}" + (f" ({row['error']})" if "error" in row else ""),
            )
        )

    def ratio(
        group: str, variant: str, over: str, limit: float, what: str, key: str = "instr"
    ) -> None:
        a, b = value(group, variant, key), value(group, over, key)
        if a is None or b is None:
            found.append((None, f"{what} <= {limit:.2f}x (not measured)"))
        else:
            found.append((a / b <= limit, f"{what}: {a / b:.3f}x (target <= {limit:.2f}x)"))

    if "outbound" in results:
        ratio(
            "outbound", "transport", "baseline", 1.05, "outbound: CorrelationTransport vs raw httpx"
        )
        ratio("outbound", "aigw", "baseline", 1.10, "outbound: GatewayClient vs raw httpx")
        ratio(
            "outbound",
            "aigw_openai",
            "openai_sdk",
            1.02,
            "outbound: aigw OpenAI wrapper vs plain SDK",
        )
        ratio(
            "outbound",
            "aigw_logging",
            "aigw",
            1.15,
            "logging: GatewayClient with INFO logging vs without",
        )
    for group in ("outbound_stream", "outbound_stream_long"):
        if group in results:
            ratio(
                group, "aigw", "baseline", 1.08, f"{group}: GatewayClient stream vs raw iter_lines"
            )
    if "outbound_openai3" in results:
        ratio(
            "outbound_openai3",
            "aigw_openai",
            "openai_sdk",
            1.02,
            "outbound_openai3: aigw OpenAI wrapper vs plain SDK 3.x",
        )

    e2e = results.get("e2e", {})
    for server in ("django", "fastapi"):
        shared, per_request = (
            value("e2e", f"{server}_shared", "rps"),
            value("e2e", f"{server}_per_request", "rps"),
        )
        if shared is not None and per_request is not None:
            found.append(
                (
                    shared >= 1.5 * per_request,
                    f"e2e {server}: shared client {shared / per_request:.2f}x the req/s of a new httpx client per request (target >= 1.5x)",
                )
            )
        p99, base_p99 = (
            value("e2e", f"{server}_shared", "p99_us"),
            value("e2e", f"{server}_baseline", "p99_us"),
        )
        if p99 is not None and base_p99 is not None:
            found.append(
                (
                    p99 <= 1.2 * base_p99,
                    f"e2e {server}: p99 {p99 / base_p99:.2f}x the no-correlation baseline (target <= 1.2x)",
                )
            )
    del e2e

    burst = results.get("concurrency", {})
    aigw_burst, sdk_burst = burst.get("aigw_async", {}), burst.get("openai_sdk_async", {})
    if aigw_burst.get("us") and sdk_burst.get("us"):
        found.append(
            (
                aigw_burst.get("pool_timeouts") == 0 and aigw_burst.get("other_errors") == 0,
                f"concurrency: AsyncGatewayClient burst without errors ({aigw_burst.get('pool_timeouts')} PoolTimeout, {aigw_burst.get('other_errors')} other)",
            )
        )
        found.append(
            (
                aigw_burst["us"] <= sdk_burst["us"],
                f"concurrency: AsyncGatewayClient {aigw_burst['us'] / 1e6:.2f}s vs OpenAI SDK {sdk_burst['us'] / 1e6:.2f}s",
            )
        )

    memory = results.get("memory", {})
    for name, row in memory.items():
        retained = row.get("aigw_retained_bytes_per_op")
        if retained is not None and name.endswith(("aigw", "aigw_client")):
            found.append(
                (
                    retained <= 0,
                    f"memory {name}: {retained:.1f} B retained per op from aigw_middleware (target 0)",
                )
            )
        rss = row.get("rss_growth_mb")
        if rss is not None and name.endswith(("aigw", "aigw_client")):
            found.append(
                (
                    rss < 5,
                    f"memory {name}: RSS +{rss:.2f} MB over {row.get('ops')} ops (target < 5 MB)",
                )
            )
        if name == "async_loops" and row.get("live_clients") is not None:
            found.append(
                (
                    row["live_clients"] <= 1,
                    f"memory: {row['live_clients']} async clients alive after {row.get('ops')} event loops (target <= 1)",
                )
            )
    return found


def render(results: Results, meta: dict[str, Any]) -> str:
    lines: list[str] = []
    for group, rows in results.items():
        if group == "e2e":
            lines += e2e_table(rows)
        elif group == "concurrency":
            lines += burst_table(rows)
        elif group == "memory":
            lines += memory_table(rows)
        else:
            lines += variant_table(group, rows)
        lines.append("")
    lines.append("targets")
    for ok, text in targets(results):
        mark = "PASS" if ok else "----" if ok is None else "FAIL"
        lines.append(f"  [{mark}] {text}")
    lines.append("")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    machine = meta["machine"]
    lines.append(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}; {machine['valgrind'] or 'no valgrind'}"
    )
    lines.append(f"versions: {versions}")
    lines.append(f"mode: {meta['mode']}, {meta['seconds']} s")
    return "\n".join(lines)


def markdown(results: Results) -> str:
    """The variant groups as Markdown tables (for the README's Performance section)."""
    out = []
    for group, rows in results.items():
        if group in ("e2e", "concurrency", "memory"):
            continue
        base = rows.get("baseline", {})
        out += [
            f"**{group}**",
            "",
            "| variant | µs/op | vs baseline | instr/op | vs baseline | adds instr |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in rows.items():
            us, instr = row.get("us"), row.get("instr")
            if us is None and instr is None:
                reason = row.get("skipped") or row.get("error") or "not measured"
                out.append(f"| {name} | {reason} | | | | |")
                continue
            out.append(
                f"| {name} | {_num(us)} | {_ratio(us, base.get('us'))} | {_num(instr, 0)}"
                f" | {_ratio(instr, base.get('instr'))} | {_adds(instr, base.get('instr'), 0)} |"
            )
        out.append("")
    return "\n".join(out)
