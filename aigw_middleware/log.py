"""Logging: correlation fields on every record, and the library's own per-attempt records.

The library logs on ``aigw_middleware``: one record per outbound attempt with method, host and
path (never the query string), status, attempt number, duration and the correlation fields.
It never logs a request or response body, nor any header value.
"""

from __future__ import annotations

import logging

from .context import CorrelationContext, current_context

__all__ = [
    "CorrelationFilter",
    "correlation_fields",
    "log_attempt",
    "logger",
    "structlog_processor",
]

logger = logging.getLogger("aigw_middleware")

UNBOUND = "-"


class CorrelationFilter(logging.Filter):
    """Adds ``request_id``, ``tenant`` and ``team`` to every record (``-`` where unbound).

    Attach it to a handler and use the fields in the format, e.g.
    ``"%(levelname)s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"``. Fields a
    record already carries (set through ``extra=``) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            context = current_context()
            if context is None:
                record.request_id = record.tenant = record.team = UNBOUND
            else:
                record.request_id = context.request_id
                record.tenant = context.tenant or UNBOUND
                record.team = context.team or UNBOUND
        return True


def log_attempt(
    *,
    method: str,
    target: str,
    status: int | None,
    attempt: int,
    duration: float,
    context: CorrelationContext,
    outcome: str,
    level: int = logging.INFO,
) -> None:
    """One structured record for one outbound attempt. ``target`` is host and path only."""
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "aigw %s %s -> %s attempt=%d %.1fms %s request_id=%s tenant=%s team=%s",
        method,
        target,
        status if status is not None else "-",
        attempt,
        duration * 1000.0,
        outcome,
        context.request_id,
        context.tenant or UNBOUND,
        context.team or UNBOUND,
        extra={
            "aigw_method": method,
            "aigw_target": target,
            "aigw_status": status,
            "aigw_attempt": attempt,
            "aigw_duration_ms": round(duration * 1000.0, 3),
            "aigw_outcome": outcome,
            "request_id": context.request_id,
            "tenant": context.tenant or UNBOUND,
            "team": context.team or UNBOUND,
        },
    )


# Imported here because structlog_processor was appended to this module after the rest.
from collections.abc import MutableMapping  # noqa: E402
from typing import Any  # noqa: E402


def structlog_processor(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding ``request_id``, ``tenant`` and ``team`` (``-`` where unbound).

    Keys the event already has (bound with ``log.bind(...)`` or passed to the call) are kept.
    Put it before the renderer::

        structlog.configure(processors=[structlog_processor, structlog.processors.JSONRenderer()])
    """
    for key, value in correlation_fields().items():
        event_dict.setdefault(key, value)
    return event_dict


def correlation_fields() -> dict[str, str]:
    """``request_id``, ``tenant`` and ``team`` of the bound context, ``-`` where unbound."""
    context = current_context()
    if context is None:
        return {"request_id": UNBOUND, "tenant": UNBOUND, "team": UNBOUND}
    return {
        "request_id": context.request_id,
        "tenant": context.tenant or UNBOUND,
        "team": context.team or UNBOUND,
    }
