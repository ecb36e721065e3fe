"""System checks: invalid gateway settings are errors at start-up, each with a stable id.

| id | problem |
|---|---|
| aigw.E001 | invalid base URL |
| aigw.E002 | invalid timeout |
| aigw.E003 | unknown header profile |
| aigw.E004 | invalid network in the trusted tenant-header networks |
| aigw.E005 | tenant resolver that cannot be imported or is not callable |
| aigw.E006 | ``settings.AIGW`` is not a dict |
| aigw.E007 | any other invalid setting, unknown keys included |
| aigw.W001 | tenant and team can never be set (no resolver, no trusted networks) |
| aigw.W002 | the middleware runs before ``AuthenticationMiddleware`` while a resolver is set |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning

from ..config import ENV_VARS, GatewayConfig
from ..errors import ConfigurationError
from .conf import conf

__all__ = ["check_settings"]

#: Error ids by the GatewayConfig field at fault; other fields get OTHER_ERROR.
FIELD_ERRORS: Mapping[str, str] = {
    "base_url": "aigw.E001",
    "timeout": "aigw.E002",
    "header_profile": "aigw.E003",
    "trust_tenant_headers_from": "aigw.E004",
    "tenant_resolver": "aigw.E005",
}
NOT_A_DICT = "aigw.E006"
OTHER_ERROR = "aigw.E007"
NO_TENANT_SOURCE = "aigw.W001"
RESOLVER_BEFORE_AUTH = "aigw.W002"

MIDDLEWARE_PATHS = frozenset(
    {
        "aigw_middleware.django.AIGatewayMiddleware",
        "aigw_middleware.django.middleware.AIGatewayMiddleware",
    }
)
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Every problem of ``settings.AIGW`` and the ``AIGW_*`` environment variables."""
    try:
        mapping = conf.AIGW
    except ConfigurationError as exc:
        hint = "Set AIGW to a dict such as {'BASE_URL': 'http://localhost:8080/v1'}."
        return [Error(f"Invalid setting: settings.{exc}", hint=hint, id=NOT_A_DICT)]
    # Each value is checked on its own so that one run reports every bad value, not the first.
    errors: list[CheckMessage] = [
        _error(problem, "settings.AIGW")
        for key, value in mapping.items()
        if (problem := _problem({key: value}, {}))
    ]
    errors += [
        _error(problem, "the environment")
        for var, name in ENV_VARS.items()
        if name.upper() not in mapping and (raw := os.environ.get(var))
        if (problem := _problem({}, {var: raw}))
    ]
    if errors:
        return errors
    try:
        config = conf.build()
    except ConfigurationError as exc:
        return [_error(exc, "settings.AIGW")]
    return _warnings(config)


def _problem(mapping: Mapping[str, Any], environ: Mapping[str, str]) -> ConfigurationError | None:
    try:
        GatewayConfig.from_mapping(mapping, environ=environ)
    except ConfigurationError as exc:
        return exc
    return None


def _error(exc: ConfigurationError, where: str) -> Error:
    name = ENV_VARS.get(exc.key, exc.key.lower())
    return Error(
        f"Invalid AI gateway setting in {where}: {exc}",
        hint=f"Fix {exc.key}: it {exc.reason}.",
        id=FIELD_ERRORS.get(name, OTHER_ERROR),
    )


def _warnings(config: GatewayConfig) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if config.tenant_resolver is None and not config.trust_tenant_headers_from:
        messages.append(
            CheckWarning(
                "No tenant or team will ever reach the AI gateway: AIGW sets neither "
                "TENANT_RESOLVER nor TRUST_TENANT_HEADERS_FROM.",
                hint="Set AIGW['TENANT_RESOLVER'] to a function (request) -> (tenant, team), "
                "or list your proxies' networks in AIGW['TRUST_TENANT_HEADERS_FROM'].",
                id=NO_TENANT_SOURCE,
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if (
        config.tenant_resolver is not None
        and ours
        and AUTH_MIDDLEWARE in middleware
        and ours[0] < middleware.index(AUTH_MIDDLEWARE)
    ):
        messages.append(
            CheckWarning(
                "AIGatewayMiddleware runs before AuthenticationMiddleware, so the tenant "
                "resolver cannot see request.user.",
                hint=f"Move AIGatewayMiddleware after {AUTH_MIDDLEWARE} in MIDDLEWARE.",
                id=RESOLVER_BEFORE_AUTH,
            )
        )
    return messages
