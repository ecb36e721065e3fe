"""The tenant resolver's results: the shapes accepted, and each value checked by its field's rule.

A refused shape or an invalid value is logged (without the values: they may be personal data)
and gives nothing, never an error for the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from ._rules import _is_valid_label, _is_valid_request_id, _is_valid_user
from .log import _escape_for_log

_logger = logging.getLogger("aigw_middleware")

#: Resolver results that are never awaitable: the documented shapes, checked first (cheap).
_PLAIN_RESULTS = (tuple, list, dict, type(None))
#: The keys a tenant resolver's mapping may have.
_RESOLVER_KEYS = ("tenant", "team", "user", "session")
#: Each attributed field's rule, as the inbound side applies it.
_VALID: dict[str, Callable[[object], bool]] = {
    "tenant": _is_valid_label,
    "team": _is_valid_label,
    "user": _is_valid_user,
    "session": _is_valid_request_id,
}


def _resolved(result: object) -> dict[str, str | None]:
    """A resolver's result as checked values; a refused shape is logged and gives none."""
    values = _resolver_values(result)
    if values is None:
        _logger.error(
            "aigw: tenant resolver returned %s; expected (tenant, team), a mapping with any "
            "of the keys %s, or None; continuing without its values",
            _described(result),
            ", ".join(_RESOLVER_KEYS),
        )
        return {}
    return {key: _checked(key, key, value) for key, value in values.items()}


def _merge(values: dict[str, str | None], resolved: dict[str, str | None]) -> None:
    """The resolver's values win where it gave one."""
    for key, value in resolved.items():
        if value is not None:
            values[key] = value


def _resolver_values(result: object) -> dict[str, object] | None:
    """The fields of a resolver's result, or None when it is not a documented shape.

    A pair (tuple or list of two: tenant and team) or a mapping with any of the keys
    ``tenant``, ``team``, ``user`` and ``session``; each value a string, an int or None.
    Anything else (a string, a set, another length, an unknown key) would be unpacked into the
    wrong fields, so it is refused as a whole.
    """
    if result is None:
        return {}
    if isinstance(result, (tuple, list)):
        if len(result) != 2:
            return None
        values = {"tenant": result[0], "team": result[1]}
    elif isinstance(result, Mapping):
        if not set(result).issubset(_RESOLVER_KEYS):
            return None
        values = dict(result)
    else:
        return None
    for value in values.values():
        if not _is_label_type(value):
            return None
    return values


def _is_label_type(value: object) -> bool:
    return value is None or isinstance(value, str) or type(value) is int


def _described(result: object) -> str:
    """What a refused resolver result was, without its values (they may be personal data)."""
    kind = type(result).__name__
    if isinstance(result, Mapping):
        if not set(result).issubset(_RESOLVER_KEYS):
            return f"a {kind} with other keys"
        return f"a {kind} with a value that is not a string"
    if isinstance(result, (tuple, list)):
        if len(result) != 2:
            return f"a {kind} of {len(result)} items"
        return f"a {kind} with a value that is not a string"
    return f"a {kind}"


def _checked(field: str, name: str, value: object) -> str | None:
    """``value`` when valid for ``field``; an invalid one is logged under ``name`` and dropped."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if _VALID[field](value):
        return value
    _logger.warning("aigw: dropped invalid %s value %s", name, _escape_for_log(value))
    return None
