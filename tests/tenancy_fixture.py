"""A tenant resolver importable by dotted path, for configuration tests."""

from __future__ import annotations

NOT_CALLABLE = 42


def resolve(request: object) -> tuple[str, str]:
    return "acme", "ml"
