"""The carrier API: the correlation context written into a message's headers and read back."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from aigw_middleware import bind_context, current_context
from aigw_middleware.context import CorrelationContext, _reset_context, _set_context
from aigw_middleware.propagation import extract, inject

SECRET = "sk-live-do-not-log"


def aigw_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "aigw_middleware" and r.levelno >= logging.WARNING
    ]


def test_the_bound_context_makes_the_round_trip_through_a_header_dict() -> None:
    with bind_context(
        request_id="req-1", tenant="acme", team="ml", user="u-7", session="sess-9"
    ) as bound:
        carrier: dict[str, str] = {"content-type": "application/json"}
        inject(carrier)

    assert carrier["content-type"] == "application/json"
    assert all(isinstance(value, str) for value in carrier.values())
    assert extract(carrier) == bound


def test_only_the_values_bound_are_written() -> None:
    with bind_context(request_id="req-1"):
        carrier: dict[str, str] = {}
        inject(carrier)

    assert carrier == {"aigw_request_id": "req-1"}
    assert extract(carrier) == CorrelationContext("req-1")


def test_outside_any_context_inject_adds_nothing_and_extract_finds_nothing() -> None:
    assert current_context() is None
    carrier: dict[str, str] = {"key": "value"}
    inject(carrier)

    assert carrier == {"key": "value"}
    assert extract(carrier) is None
    assert extract({}) is None


def test_a_carrier_without_a_request_id_gets_a_fresh_one() -> None:
    context = extract({"aigw_tenant": "acme"})

    assert context is not None
    assert context.tenant == "acme"
    assert len(context.request_id) == 32


def test_an_invalid_bound_value_is_not_written() -> None:
    token = _set_context(CorrelationContext("bad id\n", tenant="acme corp", team="ml"))
    try:
        carrier: dict[str, str] = {}
        inject(carrier)
    finally:
        _reset_context(token)

    assert carrier == {"aigw_team": "ml"}


GARBAGE: list[Any] = [
    pytest.param({"aigw_request_id": 12345, "aigw_tenant": "acme"}, id="int request ID"),
    pytest.param({"aigw_request_id": b"req-1", "aigw_tenant": "acme"}, id="bytes request ID"),
    pytest.param({"aigw_request_id": ["req-1"], "aigw_tenant": "acme"}, id="list request ID"),
    pytest.param({"aigw_request_id": "req 1\r\nX-Forged: 1", "aigw_tenant": "acme"}, id="CRLF"),
    pytest.param({"aigw_request_id": "req-\x001", "aigw_tenant": "acme"}, id="NUL"),
    pytest.param({"aigw_request_id": "r" * 10240, "aigw_tenant": "acme"}, id="10 KiB"),
]


@pytest.mark.parametrize("carrier", GARBAGE)
def test_an_invalid_request_id_is_dropped_with_one_warning_and_replaced(
    caplog: pytest.LogCaptureFixture, carrier: dict[str, Any]
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        context = extract(carrier)

    assert context is not None
    assert context.tenant == "acme"
    assert len(context.request_id) == 32
    assert context.request_id != carrier["aigw_request_id"]
    [warning] = aigw_warnings(caplog)
    assert "aigw_request_id" in warning.getMessage()


def test_every_invalid_value_is_dropped_under_one_warning_that_shows_no_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    carrier = {
        "aigw_request_id": "req-1",
        "aigw_tenant": SECRET + " " * 10240,
        "aigw_team": {"token": SECRET},
        "aigw_user": SECRET + "\x1b[31m",
        "aigw_session": SECRET * 1000,
        "authorization": f"Bearer {SECRET}",
    }
    with caplog.at_level(logging.DEBUG, logger="aigw_middleware"):
        context = extract(carrier)

    assert context == CorrelationContext("req-1")
    [warning] = aigw_warnings(caplog)
    message = warning.getMessage()
    for key in ("aigw_tenant", "aigw_team", "aigw_user", "aigw_session"):
        assert key in message
    assert SECRET not in caplog.text
    assert len(message) < 500


@pytest.mark.parametrize("carrier", [None, "aigw_request_id=req-1", ["aigw_request_id"], 42])
def test_a_carrier_that_is_not_a_mapping_gives_none_and_one_warning(
    caplog: pytest.LogCaptureFixture, carrier: Any
) -> None:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        assert extract(carrier) is None

    [warning] = aigw_warnings(caplog)
    assert "req-1" not in warning.getMessage()


def test_a_valid_carrier_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aigw_middleware"):
        extract({"aigw_request_id": "req-1", "aigw_tenant": "acme", "other": object()})

    assert not aigw_warnings(caplog)
