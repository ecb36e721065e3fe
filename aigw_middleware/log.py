"""Logging: correlation fields on every record, and the library's own per-attempt records.

The library logs on ``aigw_middleware``: one record per outbound attempt with method, host and
path (never the query string), status, attempt number, duration and the correlation fields.
It never logs a request or response body, nor any header value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

from . import _otel
from .context import CorrelationContext, current_context

__all__ = ["CorrelationFilter", "structlog_processor"]

_logger = logging.getLogger("aigw_middleware")

_UNBOUND = "-"
#: The correlation fields of a record, as CorrelationFilter adds them.
_FIELDS = ("request_id", "tenant", "team", "user", "session")


class CorrelationFilter(logging.Filter):
    """Adds ``request_id``, ``tenant``, ``team``, ``user`` and ``session`` to every record
    (``-`` where unbound), and ``trace_id`` / ``span_id`` (hex) of the active OpenTelemetry span
    (``-`` without one).

    Attach it to a handler and use the fields in the format, e.g.
    ``"%(levelname)s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"``. Fields a
    record already carries (set through ``extra=``) are kept, each one on its own: a record
    with only ``extra={"request_id": ...}`` still gets the bound tenant and team.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the correlation fields to ``record`` (keeping any it has); always True."""
        found = record.__dict__
        # The library's own records carry all five already: nothing to look up for them.
        if not (
            "request_id" in found
            and "tenant" in found
            and "team" in found
            and "user" in found
            and "session" in found
        ):
            for key, value in _correlation_fields().items():
                found.setdefault(key, value)
        ids = _otel.current_ids()
        found.setdefault("trace_id", _UNBOUND if ids is None else ids[0])
        found.setdefault("span_id", _UNBOUND if ids is None else ids[1])
        return True


def _log_attempt(
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
    if not _logger.isEnabledFor(level):
        return
    fields = _fields_of(context)
    # Logger.log's steps without findCaller, which walks the stack to find this very function
    # (about a fifth of a record's cost): the record names this line, as findCaller would.
    record = _logger.makeRecord(
        _logger.name,
        level,
        __file__,
        sys._getframe().f_lineno,
        "aigw %s %s -> %s attempt=%d %.1fms %s request_id=%s tenant=%s team=%s",
        (
            method,
            target,
            status if status is not None else "-",
            attempt,
            duration * 1000.0,
            outcome,
            fields["request_id"],
            fields["tenant"],
            fields["team"],
        ),
        None,
        "_log_attempt",
        {
            "aigw_method": method,
            "aigw_target": target,
            "aigw_status": status,
            "aigw_attempt": attempt,
            "aigw_duration_ms": round(duration * 1000.0, 3),
            "aigw_outcome": outcome,
            **fields,
        },
    )
    _logger.handle(record)


def structlog_processor(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding ``request_id``, ``tenant``, ``team``, ``user`` and
    ``session`` (``-`` where unbound), and ``trace_id`` / ``span_id`` (hex) while an
    OpenTelemetry span is active.

    Keys the event already has (bound with ``log.bind(...)`` or passed to the call) are kept.
    Put it before the renderer::

        structlog.configure(processors=[structlog_processor, structlog.processors.JSONRenderer()])
    """
    for key, value in _correlation_fields().items():
        event_dict.setdefault(key, value)
    ids = _otel.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def _escape_for_log(value: str, limit: int = 64) -> str:
    """An untrusted value made safe for one log line: cut to ``limit`` characters, escaped."""
    return repr(value[:limit])


def _correlation_fields() -> dict[str, str]:
    """The log fields of the bound context, ``-`` where unbound."""
    return _fields_of(current_context())


def _fields_of(context: CorrelationContext | None) -> dict[str, str]:
    """The five log fields of ``context`` (``-`` for None values or no context)."""
    if context is None:
        return dict.fromkeys(_FIELDS, _UNBOUND)
    return {
        "request_id": context.request_id,
        "tenant": context.tenant or _UNBOUND,
        "team": context.team or _UNBOUND,
        "user": context.user or _UNBOUND,
        "session": context.session or _UNBOUND,
    }
