"""Retry decisions as pure functions: which failures to retry, and how long to wait."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__: list[str] = []

_RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 60.0
_INITIAL_DELAY = 0.5
_MAX_DELAY = 8.0


@dataclass(frozen=True, slots=True)
class _RetryDecision:
    """Whether to try again, after how many seconds, and the server's ``retry_after`` if any."""

    retry: bool
    delay: float = 0.0
    retry_after: float | None = None
    reason: str = ""


def _backoff_delay(retry: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``retry`` (0-based): ``min(0.5 * 2**retry, 8)``, minus up to 25%."""
    base = min(_INITIAL_DELAY * 2.0**retry, _MAX_DELAY)
    return base * (1.0 - 0.25 * rand())


def _parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, then ``Retry-After`` (seconds or date).

    ``headers`` must look names up case-insensitively (``httpx.Headers`` does). None when absent
    or unreadable.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def _decide(
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
    retries_done: int,
    max_retries: int,
    budget: bool = False,
    rand: Callable[[], float] = random.random,
) -> _RetryDecision:
    """Decide about one failed attempt.

    ``status`` is None for a connect error or timeout. Budget errors are never retried; a
    ``Retry-After`` over :data:`_MAX_RETRY_AFTER` fails at once; ``x-should-retry`` overrides the
    status rule.
    """
    retry_after = _parse_retry_after(headers) if headers is not None else None
    if budget:
        return _RetryDecision(False, retry_after=retry_after, reason="budget exhausted")
    should = headers.get("x-should-retry") if headers is not None else None
    if should == "false":
        retryable = False
    elif should == "true":
        retryable = True
    else:
        retryable = status is None or status in _RETRYABLE_STATUSES
    if not retryable:
        return _RetryDecision(False, retry_after=retry_after, reason="not retryable")
    if retries_done >= max_retries:
        return _RetryDecision(False, retry_after=retry_after, reason="retries exhausted")
    if retry_after is not None:
        if retry_after > _MAX_RETRY_AFTER:
            return _RetryDecision(
                False,
                retry_after=retry_after,
                reason=f"Retry-After {retry_after:g}s exceeds {_MAX_RETRY_AFTER:g}s",
            )
        return _RetryDecision(True, retry_after, retry_after, "retry-after")
    return _RetryDecision(True, _backoff_delay(retries_done, rand=rand), None, "backoff")
