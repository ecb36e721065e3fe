"""Carry the correlation context through a message: a task queue's or a message bus's headers.

``inject(carrier)`` writes the bound context into a mapping of strings (Kafka or Redis-streams
headers, a job's metadata); ``extract(carrier)`` reads it back on the consuming side as a
validated :class:`CorrelationContext`. Bind what ``extract`` returns with ``bind_context`` (or
the private setter the integrations use) around the work the message causes.

The keys are ``aigw_request_id``, ``aigw_tenant``, ``aigw_team``, ``aigw_user`` and
``aigw_session``. A value that is not a string, too long or outside its rule is dropped, with one
WARNING per carrier that names the keys but never the values; nothing is raised to the consumer.
The Celery integration is built on these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from ._rules import _RULES, _is_valid_request_id, _new_request_id
from .context import CorrelationContext, _safe_context, current_context

__all__ = ["extract", "inject"]

#: Carrier keys, by context field.
_KEYS: dict[str, str] = {
    "request_id": "aigw_request_id",
    "tenant": "aigw_tenant",
    "team": "aigw_team",
    "user": "aigw_user",
    "session": "aigw_session",
}

_logger = logging.getLogger("aigw_middleware")


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the bound context's values into ``carrier``; outside any context it adds nothing."""
    carrier.update(_carried_values(current_context()))


def extract(carrier: Mapping[str, Any]) -> CorrelationContext | None:
    """The context ``carrier`` holds, validated; None when it holds no valid value of ours.

    A carried context without a valid request ID gets a fresh one. Invalid values are dropped
    with one WARNING naming their keys (never their values).
    """
    if not isinstance(carrier, Mapping):
        _logger.warning(
            "aigw: ignored a correlation carrier that is not a mapping (%s)",
            type(carrier).__name__,
        )
        return None
    not_strings: list[str] = []
    invalid: list[str] = []
    kept: dict[str, str] = {}
    for field, key in _KEYS.items():
        value = carrier.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            not_strings.append(f"{key} ({type(value).__name__})")
        elif _is_valid(field, value):
            kept[field] = value
        elif field == "request_id":
            invalid.append(f"invalid incoming {key}")
        else:
            invalid.append(f"invalid {field} ({key})")
    if not_strings:
        invalid.insert(0, "values that are not strings: " + ", ".join(not_strings))
    if invalid:
        _logger.warning("aigw: ignored correlation values in a message: %s", "; ".join(invalid))
    if not kept:
        return None
    request_id = kept.pop("request_id", None) or _new_request_id()
    return CorrelationContext(request_id, **kept)


def _is_valid(field: str, value: str) -> bool:
    if field == "request_id":
        return _is_valid_request_id(value)
    return _RULES[field][0](value)


def _carried_values(context: CorrelationContext | None) -> dict[str, str]:
    """What a message carries for ``context``: its valid values, by carrier key."""
    if context is None:
        return {}
    safe = _safe_context(context)
    # An invalid bound request ID is not sent: the consumer generates its own.
    values = {
        "request_id": safe.request_id if safe.request_id == context.request_id else None,
        "tenant": safe.tenant,
        "team": safe.team,
        "user": safe.user,
        "session": safe.session,
    }
    return {_KEYS[field]: value for field, value in values.items() if value is not None}
