"""System checks: a wrong gateway setup is reported by ``manage.py check``, each with a stable id.

Each setting has its own error id for a bad value, kept with the field in
:mod:`aigw_middleware.config` (``aigw.E001`` ``BASE_URL`` ... ``aigw.E019`` ``EXTRA_HEADERS``).
Besides those:

| id | problem |
|---|---|
| aigw.E006 | ``settings.AIGW`` is not a dict |
| aigw.E007 | an unknown (often misspelt) key in ``settings.AIGW`` |
| aigw.W001 | tenant and team can never be set (no resolver, no trusted networks) |
| aigw.W002 | the middleware runs before ``AuthenticationMiddleware`` while a resolver is set |
| aigw.E100 | no gateway URL: neither ``settings.AIGW["BASE_URL"]`` nor ``AIGW_BASE_URL`` |
| aigw.E101 | a top-level ``AIGW_*`` setting, which is never read |
| aigw.W100 | the app is installed but its middleware is not in ``MIDDLEWARE`` |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning

from .._parsers import _closest_name
from ..config import _ENV_VARS, _SETTINGS, GatewayConfig
from ..errors import ConfigurationError
from .conf import _SETTING, _conf

__all__: list[str] = []

_NOT_A_DICT = "aigw.E006"
_UNKNOWN_KEY = "aigw.E007"
_NO_BASE_URL = "aigw.E100"
_TOP_LEVEL_SETTING = "aigw.E101"
_NO_TENANT_SOURCE = "aigw.W001"
_RESOLVER_BEFORE_AUTH = "aigw.W002"
_NO_MIDDLEWARE = "aigw.W100"

_MIDDLEWARE = "aigw_middleware.django.AIGatewayMiddleware"
_MIDDLEWARE_PATHS = frozenset(
    {_MIDDLEWARE, "aigw_middleware.django.middleware.AIGatewayMiddleware"}
)
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
_EXAMPLE = f'{_SETTING} = {{"BASE_URL": "http://localhost:8080/v1"}}'


def _check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """Every problem of ``settings.AIGW``, of ``AIGW_*`` settings and environment variables."""
    try:
        mapping = _conf.AIGW
    except ConfigurationError as exc:
        return [
            Error(
                f"Invalid setting: settings.{exc}.",
                hint=f"Set it to a dict such as {_EXAMPLE}.",
                id=_NOT_A_DICT,
            )
        ]
    keys = {s.django_key: s for s in _SETTINGS.values()}
    # Each value is checked on its own so that one run reports every bad value, not the first.
    errors: list[CheckMessage] = _top_level_settings()
    errors += [_unknown_key(key) for key in mapping if key not in keys]
    errors += [
        _invalid(problem, f'{_SETTING}["{key}"]', keys[key].check_id)
        for key, value in mapping.items()
        if key in keys and (problem := _problem({key: value}, {}))
    ]
    errors += [
        _invalid(problem, var, _SETTINGS[name].check_id)
        for var, name in _ENV_VARS.items()
        if name.upper() not in mapping and (raw := os.environ.get(var))
        if (problem := _problem({}, {var: raw}))
    ]
    if errors:
        return errors
    try:
        config = _conf.build()
    except ConfigurationError as exc:
        return [_invalid(exc, f'{_SETTING}["{exc.key}"]', _UNKNOWN_KEY)]
    if config.base_url is None:
        return [_no_base_url()]
    return _warnings(config)


def _problem(mapping: Mapping[str, Any], environ: Mapping[str, str]) -> ConfigurationError | None:
    try:
        GatewayConfig.from_mapping(mapping, environ=environ)
    except ConfigurationError as exc:
        return exc
    return None


def _invalid(exc: ConfigurationError, name: str, check_id: str) -> Error:
    return Error(
        f"Invalid AI gateway setting: {exc}.",
        hint=f"{name} {exc.reason}.",
        id=check_id,
    )


def _unknown_key(key: str) -> Error:
    meant = _closest_name(key, (s.django_key for s in _SETTINGS.values()))
    return Error(
        f'The key settings.{_SETTING}["{key}"] is unknown and ignored.',
        hint=f'Did you mean "{meant}"? Write it as {_SETTING}["{meant}"].'
        if meant
        else "The keys are the GatewayConfig fields in upper case, such as BASE_URL.",
        id=_UNKNOWN_KEY,
    )


def _top_level_settings() -> list[CheckMessage]:
    """``AIGW_BASE_URL = ...`` in settings.py, the Flask and environment spelling, is not read."""
    messages: list[CheckMessage] = []
    for name in sorted(n for n in dir(settings) if n.startswith(f"{_SETTING}_")):
        written = name[len(_SETTING) + 1 :]
        key = _closest_name(written, (s.django_key for s in _SETTINGS.values())) or written
        messages.append(
            Error(
                f"settings.{name} is not read: the AI gateway settings are one dict, "
                f"settings.{_SETTING}.",
                hint=f'Use {_SETTING} = {{"{key}": ...}} instead of {name} = ....',
                id=_TOP_LEVEL_SETTING,
            )
        )
    return messages


def _no_base_url() -> Error:
    return Error(
        f'No AI gateway URL: settings.{_SETTING}["BASE_URL"] is not set, and neither is the '
        "AIGW_BASE_URL environment variable, so every gateway call would fail.",
        hint=f"Set {_EXAMPLE} (your gateway's root URL) in settings.py, or set AIGW_BASE_URL "
        "in the environment.",
        id=_NO_BASE_URL,
    )


def _warnings(config: GatewayConfig) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in _MIDDLEWARE_PATHS]
    if not ours:
        messages.append(
            CheckWarning(
                f"{_MIDDLEWARE} is not in MIDDLEWARE, so requests bind no correlation context: "
                "each gateway call gets a fresh request ID and no tenant or team, and responses "
                "carry no X-AI-Request-Id.",
                hint=f'Add "{_MIDDLEWARE}" to MIDDLEWARE, after {_AUTH_MIDDLEWARE}.',
                id=_NO_MIDDLEWARE,
            )
        )
    if config.tenant_resolver is None and not config.trust_tenant_headers_from:
        messages.append(
            CheckWarning(
                "No tenant or team will ever reach the AI gateway: AIGW sets neither "
                "TENANT_RESOLVER nor TRUST_TENANT_HEADERS_FROM.",
                hint='Set AIGW["TENANT_RESOLVER"] to a function (request) -> (tenant, team), '
                'or list your proxies\' networks in AIGW["TRUST_TENANT_HEADERS_FROM"].',
                id=_NO_TENANT_SOURCE,
            )
        )
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
