"""The retry policy as pure functions."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from aigw_middleware.retry import _MAX_RETRY_AFTER, _backoff_delay, _decide, _parse_retry_after


def headers(**values: str) -> httpx.Headers:
    return httpx.Headers({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(("retry", "expected"), [(0, 0.5), (1, 1.0), (2, 2.0), (4, 8.0), (9, 8.0)])
def test_backoff_doubles_from_half_a_second_up_to_eight(retry: int, expected: float) -> None:
    assert _backoff_delay(retry, rand=lambda: 0.0) == expected
    assert _backoff_delay(retry, rand=lambda: 1.0) == expected * 0.75


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert _parse_retry_after(headers(retry_after_ms="1500", retry_after="9")) == 1.5


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert _parse_retry_after(headers(retry_after="3")) == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert _parse_retry_after(headers(retry_after=date), now=lambda: now) == 30.0
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert _parse_retry_after(headers(retry_after=past), now=lambda: now) == 0.0


@pytest.mark.parametrize("value", ["soon", "-5", ""])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert _parse_retry_after(headers(retry_after=value)) is None


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    decision = _decide(status=status, headers=headers(), retries_done=0, max_retries=2)
    assert decision.retry
    assert 0.375 <= decision.delay <= 0.5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
def test_never_retried_statuses(status: int) -> None:
    assert not _decide(status=status, headers=headers(), retries_done=0, max_retries=2).retry


def test_connection_failures_are_retried() -> None:
    assert _decide(status=None, headers=None, retries_done=1, max_retries=2).retry


def test_budget_errors_are_never_retried_even_when_the_server_says_so() -> None:
    decision = _decide(
        status=429,
        headers=headers(x_should_retry="true", retry_after="1"),
        retries_done=0,
        max_retries=2,
        budget=True,
    )
    assert not decision.retry
    assert decision.retry_after == 1.0


def test_retries_stop_at_max_retries() -> None:
    assert not _decide(status=503, headers=headers(), retries_done=2, max_retries=2).retry
    assert not _decide(status=503, headers=headers(), retries_done=0, max_retries=0).retry


def test_retry_after_is_honoured_up_to_the_limit() -> None:
    decision = _decide(status=429, headers=headers(retry_after="1"), retries_done=0, max_retries=2)
    assert (decision.retry, decision.delay, decision.retry_after) == (True, 1.0, 1.0)
    limit = str(int(_MAX_RETRY_AFTER))
    assert _decide(
        status=429, headers=headers(retry_after=limit), retries_done=0, max_retries=2
    ).retry


def test_retry_after_beyond_the_limit_fails_at_once_and_reports_it() -> None:
    decision = _decide(
        status=429, headers=headers(retry_after="120"), retries_done=0, max_retries=2
    )
    assert not decision.retry
    assert decision.retry_after == 120.0
    assert "120" in decision.reason


def test_x_should_retry_overrides_the_status_rule() -> None:
    assert _decide(
        status=400, headers=headers(x_should_retry="true"), retries_done=0, max_retries=1
    ).retry
    assert not _decide(
        status=503, headers=headers(x_should_retry="false"), retries_done=0, max_retries=1
    ).retry
