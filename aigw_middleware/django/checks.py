"""System checks: invalid gateway settings are errors at start-up, each with a stable id.

Each setting has its own error id, kept with the field in :mod:`aigw_middleware.config`
(``aigw.E001`` ``BASE_URL`` ... ``aigw.E019`` ``EXTRA_HEADERS``). Besides those:

| id | problem |
|---|---|
| aigw.E006 | ``settings.AIGW`` is not a dict |
| aigw.E007 | an unknown key |
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

from ..config import _ENV_VARS, _SETTINGS, GatewayConfig
from ..errors import ConfigurationError
from .conf import _conf

__all__: list[str] = []

_NOT_A_DICT = "aigw.E006"
_UNKNOWN_KEY = "aigw.E007"
_NO_TENANT_SOURCE = "aigw.W001"
_RESOLVER_BEFORE_AUTH = "aigw.W002"

_MIDDLEWARE_PATHS = frozenset(
    {
        "aigw_middleware.django.AIGatewayMiddleware",
        "aigw_middleware.django.middleware.AIGatewayMiddleware",
    }
)
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Every problem of ``settings.AIGW`` and the ``AIGW_*`` environment variables."""
    try:
        mapping = _conf.AIGW
    except ConfigurationError as exc:
        hint = "Set AIGW to a dict such as {'BASE_URL': 'http://localhost:8080/v1'}."
        return [Error(f"Invalid setting: settings.{exc}", hint=hint, id=_NOT_A_DICT)]
    # Each value is checked on its own so that one run reports every bad value, not the first.
    errors: list[CheckMessage] = [
        _error(problem, "settings.AIGW")
        for key, value in mapping.items()
        if (problem := _problem({key: value}, {}))
    ]
    errors += [
        _error(problem, "the environment")
        for var, name in _ENV_VARS.items()
        if name.upper() not in mapping and (raw := os.environ.get(var))
        if (problem := _problem({}, {var: raw}))
    ]
    if errors:
        return errors
    try:
        config = _conf.build()
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
    setting = _SETTINGS.get(_ENV_VARS.get(exc.key, exc.key.lower()))
    return Error(
        f"Invalid AI gateway setting in {where}: {exc}",
        hint=f"Fix {exc.key}: it {exc.reason}.",
        id=_UNKNOWN_KEY if setting is None else setting.check_id,
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
                id=_NO_TENANT_SOURCE,
            )
        )
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in _MIDDLEWARE_PATHS]
    if (
        config.tenant_resolver is not None
        and ours
        and _AUTH_MIDDLEWARE in middleware
        and ours[0] < middleware.index(_AUTH_MIDDLEWARE)
    ):
        messages.append(
            CheckWarning(
                "AIGatewayMiddleware runs before AuthenticationMiddleware, so the tenant "
                "resolver cannot see request.user.",
                hint=f"Move AIGatewayMiddleware after {_AUTH_MIDDLEWARE} in MIDDLEWARE.",
                id=_RESOLVER_BEFORE_AUTH,
            )
        )
    return messages
