"""A tenant resolver and API key resolvers importable by dotted path, for tests."""

from __future__ import annotations

from aigw_middleware.context import CorrelationContext

NOT_CALLABLE = 42


def resolve(request: object) -> tuple[str, str]:
    return "acme", "ml"


#: The gateway key of each tenant, for the API key resolver tests.
TENANT_KEYS = {"acme": "sk-acme-virtual-key", "globex": "sk-globex-virtual-key"}


def tenant_key(context: CorrelationContext) -> str | None:
    """The bound tenant's gateway key; None (the configured key) for other tenants."""
    return TENANT_KEYS.get(context.tenant or "")


def broken_key(context: CorrelationContext) -> str | None:
    raise KeyError("sk-leaked-in-a-message")
