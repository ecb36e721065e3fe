"""The demo: correlation end to end, printed as tables.

With ``AIGW_BASE_URL`` unset, an embedded FakeGateway stands in for the gateway so the demo needs
no outside service and can show exactly which headers the gateway received. With it set (and
``AIGW_API_KEY``, ``AIGW_HEADER_PROFILE``, ... as needed) the calls go to that gateway.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from aigw_middleware import GatewayClient, GatewayConfig, GatewayError, bind_context
from aigw_middleware.testing import FakeGateway

MESSAGES = [{"role": "user", "content": "Say hello to the demo"}]


@dataclass
class Row:
    """One line of a result table."""

    what: str
    sent_id: str
    seen_id: str
    gateway: str
    note: str = ""


def print_table(title: str, rows: Sequence[Row]) -> None:
    headers = ("what", "ID at the client", "ID seen by the code", "gateway received", "note")
    table = [headers, *((r.what, r.sent_id, r.seen_id, r.gateway, r.note) for r in rows)]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(headers))]
    print(f"\n== {title}")
    for n, line in enumerate(table):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * width for width in widths))


def received(gateway: FakeGateway | None, index: int) -> str:
    if gateway is None:
        return "(external gateway)"
    headers = gateway.requests[index].headers
    parts = [
        f"{name}={headers[name]}"
        for name in ("x-ai-request-id", "x-ai-tenant", "x-ai-team")
        if name in headers
    ]
    return " ".join(parts)


def library_calls(config: GatewayConfig, gateway: FakeGateway | None) -> list[Row]:
    """Calls made by plain code: inside a bound context, streamed, and outside any context."""
    rows: list[Row] = []
    with GatewayClient(config) as client:
        with bind_context(request_id="demo-req-1", tenant="acme", team="ml") as bound:
            plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            rows.append(
                Row(
                    "plain call",
                    bound.request_id,
                    plain.request_id,
                    received(gateway, -1) if gateway else "(external)",
                    plain.content[:40],
                )
            )
            with client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            ) as stream:
                text = "".join(chunk.delta for chunk in stream)
            rows.append(
                Row(
                    "streamed call",
                    bound.request_id,
                    stream.request_id,
                    received(gateway, -1) if gateway else "(external)",
                    f"{text[:40]!r}",
                )
            )
        outside = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        rows.append(
            Row(
                "outside any context",
                "-",
                outside.request_id,
                received(gateway, -1) if gateway else "(external)",
                "fresh ID per call",
            )
        )
        if gateway is not None:
            gateway.queue_response(
                402, json={"error": {"message": "Team budget exhausted", "type": "budget_exceeded"}}
            )
            with bind_context(request_id="demo-req-2", tenant="globex") as bound:
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                except GatewayError as exc:
                    rows.append(
                        Row(
                            "budget error",
                            bound.request_id,
                            str(exc.request_id),
                            received(gateway, -1),
                            type(exc).__name__,
                        )
                    )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    external = os.environ.get("AIGW_BASE_URL")
    gateway = None if external else FakeGateway().start()
    try:
        config = GatewayConfig.from_env(**({} if external else {"base_url": gateway.base_url}))  # type: ignore[union-attr]
        print(
            f"gateway: {config.base_url} ({'from AIGW_BASE_URL' if external else 'embedded FakeGateway'})"
        )
        print_table("Library calls (bind_context in a script)", library_calls(config, gateway))
    finally:
        if gateway is not None:
            gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
