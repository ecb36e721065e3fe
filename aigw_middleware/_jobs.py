"""What the task-queue integrations (RQ, Dramatiq, Django tasks) share: the carrier a job is
enqueued with, and the context a job runs with."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from .context import CorrelationContext, _make_context, _reset_context, _set_context
from .propagation import _KEYS, extract, inject


def carrier_at_enqueue() -> dict[str, str]:
    """The carrier of a job enqueued now: the bound context's values; outside any context (or
    with an invalid bound request ID) a fresh request ID, so that the job keeps one ID across
    its retries, which these queues re-enqueue from the stored job rather than from the run."""
    carrier: dict[str, str] = {}
    inject(carrier)
    carrier.setdefault(_KEYS["request_id"], _make_context().request_id)
    return carrier


def context_from(carrier: object) -> CorrelationContext:
    """The context a job runs with: the one ``carrier`` holds, else a fresh request ID only.

    Invalid values, and a carrier that is not a mapping, are dropped with one WARNING
    (``extract``); nothing is raised.
    """
    if carrier is None:
        return _make_context()
    return extract(cast(Mapping[str, Any], carrier)) or _make_context()


@contextmanager
def bound_from(carrier: object) -> Iterator[CorrelationContext]:
    """Bind :func:`context_from` ``carrier`` for the ``with`` block; reset on the way out."""
    context = context_from(carrier)
    token = _set_context(context)
    try:
        yield context
    finally:
        _reset_context(token)
