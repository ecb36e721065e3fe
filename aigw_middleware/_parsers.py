"""The parsers of the configuration values: ``(key, raw) -> value``, or ConfigurationError.

``key`` is the name the value came under (a field, a framework key or an environment variable),
so that the error names what the user wrote.
"""

from __future__ import annotations

import difflib
import importlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from .context import CorrelationContext
from .errors import ConfigurationError
from .profiles import _PROFILES, _CorrelationNames

TenantResolver = Callable[[Any], "tuple[str | None, str | None] | Mapping[str, str | None] | None"]
"""``(request) -> (tenant, team)``, a mapping with any of the keys ``tenant``, ``team``,
``user``, ``session``, or None."""
ApiKeyResolver = Callable[[CorrelationContext], "str | None"]
"""``(context) -> key``: the gateway key for one call, or None for ``api_key``."""

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def optional_str(key: str, raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigurationError(key, raw, "must be a string")
    return raw.strip() or None


def url(key: str, raw: object) -> str | None:
    text = optional_str(key, raw)
    if text is None:
        return None
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(key, raw, f"is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(key, raw, "must be an absolute http:// or https:// URL")
    if url.query or url.fragment:
        raise ConfigurationError(key, raw, "must not have a query or fragment")
    return text.rstrip("/")


def urls(key: str, raw: object) -> tuple[str, ...]:
    return tuple(u for item in str_list(key, raw) if (u := url(key, item)) is not None)


def api_key(key: str, raw: object) -> str | None:
    text = optional_str(key, raw)
    if text is not None and any(c in text for c in "\r\n\0"):
        raise ConfigurationError(key, "***", "must be a single line")
    return text


def timeout(key: str, raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(key, raw, "must be a positive number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(key, raw, "must be a positive number of seconds")
    return value


def optional_timeout(key: str, raw: object) -> float | None:
    return None if raw is None else timeout(key, raw)


def retries(key: str, raw: object) -> int:
    return _whole_number(key, raw, 0, 10)


def connections(key: str, raw: object) -> int:
    return _whole_number(key, raw, 1, 100_000)


def _whole_number(key: str, raw: object, low: int, high: int) -> int:
    problem = f"must be a whole number from {low} to {high}"
    if isinstance(raw, bool):
        raise ConfigurationError(key, raw, problem)
    try:
        value: int = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigurationError(key, raw, problem) from None
    if not low <= value <= high or (isinstance(raw, float) and raw != value):
        raise ConfigurationError(key, raw, problem)
    return value


def boolean(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigurationError(key, raw, "must be true or false")


def request_id_source(key: str, raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in ("header", "trace"):
        return raw.strip().lower()
    raise ConfigurationError(key, raw, "must be 'header' or 'trace'")


def model_prefix(key: str, raw: object) -> str | None:
    text = optional_str(key, raw)
    if text is not None:
        text = text.strip("/")
        if not text or "/" in text or any(c.isspace() for c in text):
            raise ConfigurationError(key, raw, "must be one path segment such as 'openai'")
    return text


def profile(key: str, raw: object) -> str:
    if isinstance(raw, str) and raw.strip().lower() in _PROFILES:
        return raw.strip().lower()
    raise ConfigurationError(
        key, raw, f"is not a known header profile; use one of {', '.join(_PROFILES)}"
    )


def header_name(key: str, raw: object) -> str:
    if isinstance(raw, str) and _TOKEN_RE.fullmatch(raw):
        return raw
    raise ConfigurationError(key, raw, "must be a valid HTTP header name")


def str_list(key: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple, set, frozenset)):
        items = tuple(raw)
        if all(isinstance(item, str) for item in items):
            return tuple(item.strip() for item in items)
    raise ConfigurationError(key, raw, "must be a list of strings or a comma-separated string")


def header_names(key: str, raw: object) -> tuple[str, ...]:
    names = str_list(key, raw)
    if not names:
        raise ConfigurationError(key, raw, "must name at least one header")
    return tuple(header_name(key, name) for name in names)


def cidrs(key: str, raw: object) -> tuple[str, ...]:
    out = []
    for item in str_list(key, raw):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigurationError(key, item, "is not an IP address or CIDR network") from None
    return tuple(out)


def resolver(key: str, raw: object) -> Callable[..., Any] | None:
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


def profile_options(key: str, raw: object) -> Mapping[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, str):  # from the environment: a JSON object
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ConfigurationError(key, raw, "must be a JSON object of option names") from None
    if not isinstance(raw, Mapping) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in raw.items()
    ):
        raise ConfigurationError(key, raw, "must be a mapping of option names to strings")
    return dict(raw)


def extra_headers(key: str, raw: object) -> Mapping[str, str]:
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
        header_name(key, name)
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigurationError(key, name, "header values must be single-line strings")
        not_correlation(key, name, _CORRELATION_HEADERS)
        out[name] = value
    return out


def _correlation_headers() -> dict[str, str]:
    """Every header that carries correlation, by lower-case name: what sets it."""
    names = {
        name.lower(): "a generic correlation header" for name, _ in _CorrelationNames().pairs()
    }
    for profile in _PROFILES.values():
        for name in profile.native_names:
            names.setdefault(name.lower(), f"a header of the {profile.name!r} header profile")
    return names


_CORRELATION_HEADERS = _correlation_headers()


def not_correlation(key: str, name: str, reserved: Mapping[str, str]) -> None:
    """Refuse ``name`` as a static header when it is one of ``reserved`` (lower-case names)."""
    # A static value would pin one identity on every call, whatever request made it.
    source = reserved.get(name.lower())
    if source is not None:
        raise ConfigurationError(
            key,
            name,
            f"{name} is a correlation header ({source}); the library sets it on each call "
            "from the bound context, so it cannot be one of the extra_headers",
        )


def _closest_name(name: str, known: Iterable[str]) -> str | None:
    """The name in ``known`` that ``name`` most likely meant, for a "did you mean" hint.

    The same name but for case and ``-`` / ``_`` comes first, then the closest spelling by
    :mod:`difflib` if it is close enough; else None.
    """
    by_folded = {_folded(k): k for k in known}
    folded = _folded(name)
    if folded in by_folded:
        return by_folded[folded]
    close = difflib.get_close_matches(folded, list(by_folded), n=1, cutoff=0.75)
    return by_folded[close[0]] if close else None


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the name ``name`` most likely meant, else ``""``."""
    meant = _closest_name(name, known)
    return "" if meant is None else f"; did you mean {meant!r}?"


def _folded(name: str) -> str:
    return name.upper().replace("-", "_")
