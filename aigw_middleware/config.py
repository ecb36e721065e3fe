"""GatewayConfig: every setting, its default, its environment variable and its validation.

Precedence: explicit arguments, then the framework's config (Django ``settings.AIGW``, Flask
``app.config["AIGW_…"]``), then the environment, then the defaults. Invalid values raise
:class:`~aigw_middleware.errors.ConfigurationError` naming the key and the bad value.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import ConfigurationError
from .profiles import PROFILES

__all__ = ["ENV_PREFIX", "ENV_VARS", "GatewayConfig", "TenantResolver"]

#: ``(request) -> (tenant, team)``, a mapping with the keys ``tenant`` / ``team``, or None.
TenantResolver = Callable[[Any], "tuple[str | None, str | None] | Mapping[str, str | None] | None"]

ENV_PREFIX = "AIGW_"
#: Fields that may come from the environment, by variable name.
ENV_VARS: Mapping[str, str] = {
    f"{ENV_PREFIX}{name.upper()}": name
    for name in (
        "base_url",
        "api_key",
        "proxy",
        "timeout",
        "disable_proxy",
        "max_retries",
        "model_prefix",
        "header_profile",
        "trust_tenant_headers_from",
        "extra_headers",
    )
}

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class GatewayConfig:
    """How to reach the gateway and which correlation headers to use.

    Construct it directly (values are validated and normalised), or with :meth:`from_env` /
    :meth:`from_mapping`. ``api_key`` and ``extra_headers`` values never appear in ``repr``.
    """

    base_url: str | None = None
    api_key: str | None = None
    proxy: str | None = None
    timeout: float = 30.0
    disable_proxy: bool = False
    max_retries: int = 2
    model_prefix: str | None = None
    header_profile: str = "generic"
    request_id_header: str = "X-AI-Request-Id"
    tenant_header: str = "X-AI-Tenant"
    team_header: str = "X-AI-Team"
    incoming_request_id_headers: tuple[str, ...] = ("X-AI-Request-Id", "X-Request-Id")
    trust_tenant_headers_from: tuple[str, ...] = ()
    tenant_resolver: TenantResolver | None = None
    echo_request_id: bool = True
    propagate_to: tuple[str, ...] = ()
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            parsed = _PARSERS[f.name](f.name, value)
            if parsed is not value:
                object.__setattr__(self, f.name, parsed)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key" and value is not None:
                shown.append("api_key='***'")
            elif f.name == "extra_headers":
                shown.append(f"extra_headers={ {k: '***' for k in value}!r}")
            elif f.name == "proxy" and value is not None:
                shown.append(f"proxy={_without_userinfo(value)!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"GatewayConfig({', '.join(shown)})"

    def prefixed_model(self, model: str) -> str:
        """``model`` with ``model_prefix`` in front, unless it already names a provider."""
        if self.model_prefix and "/" not in model:
            return f"{self.model_prefix}/{model}"
        return model

    def replace(self, **changes: Any) -> GatewayConfig:
        """A copy with ``changes`` applied and validated."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> GatewayConfig:
        """Settings from ``AIGW_*`` environment variables (``os.environ`` by default).

        ``overrides`` are field values that win over the environment.
        """
        return cls.from_mapping({}, environ=environ, **overrides)

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        prefix: str = "",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> GatewayConfig:
        """Settings from a framework's config, with the environment as fallback.

        Keys are field names in upper case after ``prefix``: Django's ``settings.AIGW`` uses
        ``{"BASE_URL": …}`` (``prefix=""``), Flask's ``app.config`` uses ``AIGW_BASE_URL``
        (``prefix="AIGW_"``). Unknown keys with the prefix are an error; empty environment
        variables count as unset. Pass ``environ={}`` to ignore the environment.
        """
        _check_names(overrides)
        env = os.environ if environ is None else environ
        given = {key[len(prefix) :] for key in mapping if key.startswith(prefix)}
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            if name.upper() in given or name in overrides:
                continue  # a setting or an argument wins, so its variable is not even read
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = _PARSERS[name](var, raw)
        known = {f.name.upper(): f.name for f in dataclasses.fields(cls)}
        for key, raw in mapping.items():
            if not key.startswith(prefix):
                continue
            field_name = known.get(key[len(prefix) :])
            if field_name is None:
                raise ConfigurationError(key, raw, "unknown setting")
            values[field_name] = _PARSERS[field_name](key, raw)
        values.update(overrides)
        return cls(**values)


def _check_names(changes: Mapping[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(GatewayConfig)}
    for key in changes:
        if key not in names:
            raise ConfigurationError(key, changes[key], "not a GatewayConfig field")


def _without_userinfo(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


# Parsers: (key, raw) -> normalised value, or ConfigurationError naming the key.


def _optional_str(key: str, raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigurationError(key, raw, "must be a string")
    return raw.strip() or None


def _url(key: str, raw: object) -> str | None:
    text = _optional_str(key, raw)
    if text is None:
        return None
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(key, raw, f"not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(key, raw, "must be an absolute http:// or https:// URL")
    if url.query or url.fragment:
        raise ConfigurationError(key, raw, "must not have a query or fragment")
    return text.rstrip("/")


def _urls(key: str, raw: object) -> tuple[str, ...]:
    return tuple(u for item in _str_list(key, raw) if (u := _url(key, item)) is not None)


def _api_key(key: str, raw: object) -> str | None:
    text = _optional_str(key, raw)
    if text is not None and any(c in text for c in "\r\n\0"):
        raise ConfigurationError(key, "***", "must be a single line")
    return text


def _timeout(key: str, raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(key, raw, "must be a positive number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(key, raw, "must be a positive number of seconds")
    return value


def _retries(key: str, raw: object) -> int:
    if isinstance(raw, bool):
        raise ConfigurationError(key, raw, "must be a whole number from 0 to 10")
    try:
        value: int = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigurationError(key, raw, "must be a whole number from 0 to 10") from None
    if not 0 <= value <= 10 or (isinstance(raw, float) and raw != value):
        raise ConfigurationError(key, raw, "must be a whole number from 0 to 10")
    return value


def _bool(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigurationError(key, raw, "must be true or false")


def _model_prefix(key: str, raw: object) -> str | None:
    text = _optional_str(key, raw)
    if text is not None:
        text = text.strip("/")
        if not text or "/" in text or any(c.isspace() for c in text):
            raise ConfigurationError(key, raw, "must be one path segment such as 'openai'")
    return text


def _profile(key: str, raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in PROFILES:
        return raw.strip().lower()
    raise ConfigurationError(key, raw, f"unknown header profile; use one of {', '.join(PROFILES)}")


def _header_name(key: str, raw: object) -> str:
    if isinstance(raw, str) and _TOKEN_RE.fullmatch(raw):
        return raw
    raise ConfigurationError(key, raw, "must be a valid HTTP header name")


def _str_list(key: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple, set, frozenset)):
        items = tuple(raw)
        if all(isinstance(item, str) for item in items):
            return tuple(item.strip() for item in items)
    raise ConfigurationError(key, raw, "must be a list of strings or a comma-separated string")


def _header_names(key: str, raw: object) -> tuple[str, ...]:
    names = _str_list(key, raw)
    if not names:
        raise ConfigurationError(key, raw, "must name at least one header")
    return tuple(_header_name(key, name) for name in names)


def _cidrs(key: str, raw: object) -> tuple[str, ...]:
    out = []
    for item in _str_list(key, raw):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigurationError(key, item, "not an IP address or CIDR network") from None
    return tuple(out)


def _resolver(key: str, raw: object) -> TenantResolver | None:
    if raw is None or callable(raw):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigurationError(key, raw, "must be a callable or a dotted path to one")
    path = raw.strip()
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(key, raw, "must be a dotted path such as 'myapp.tenancy.resolve'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(key, raw, f"cannot be imported ({exc})") from None
    if not callable(target):
        raise ConfigurationError(key, raw, "does not name a callable")
    return target  # type: ignore[no-any-return]


def _extra_headers(key: str, raw: object) -> Mapping[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, str):  # from the environment: a JSON object
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ConfigurationError(key, "***", "must be a JSON object of header names") from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(key, "***", "must be a mapping of header names to values")
    out: dict[str, str] = {}
    for name, value in raw.items():
        _header_name(key, name)
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigurationError(key, name, "header values must be single-line strings")
        out[name] = value
    return out


_PARSERS: Mapping[str, Callable[[str, Any], Any]] = {
    "base_url": _url,
    "api_key": _api_key,
    "proxy": _url,
    "timeout": _timeout,
    "disable_proxy": _bool,
    "max_retries": _retries,
    "model_prefix": _model_prefix,
    "header_profile": _profile,
    "request_id_header": _header_name,
    "tenant_header": _header_name,
    "team_header": _header_name,
    "incoming_request_id_headers": _header_names,
    "trust_tenant_headers_from": _cidrs,
    "tenant_resolver": _resolver,
    "echo_request_id": _bool,
    "propagate_to": _urls,
    "extra_headers": _extra_headers,
}
