"""GatewayConfig: every setting, its default, its environment variable and its validation.

Precedence: explicit arguments, then the framework's config (Django ``settings.AIGW``, Flask
``app.config["AIGW_…"]``), then the environment, then the defaults. Invalid values raise
:class:`~aigw_middleware.errors.ConfigurationError` naming the key and the bad value.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _parsers as parse
from ._parsers import ApiKeyResolver, TenantResolver, _did_you_mean
from .errors import ConfigurationError, _mask_url_credentials
from .profiles import _get_profile

__all__ = ["ApiKeyResolver", "GatewayConfig", "TenantResolver"]

_ENV_PREFIX = "AIGW_"
_METADATA_KEY = "aigw"

_logger = logging.getLogger("aigw_middleware")


@dataclass(frozen=True, slots=True)
class _Setting:
    """The facts of one setting besides its type and default, kept in its field's metadata."""

    parse: Callable[[str, Any], Any]
    check_id: str  # the Django system check that reports a bad value
    help: str  # one line, as in the docs' tables
    env: bool = False  # read from AIGW_<NAME> when the framework's config does not set it


def _setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    parse: Callable[[str, Any], Any],
    check_id: str,
    help: str,
    env: bool = False,
) -> Any:
    metadata = {_METADATA_KEY: _Setting(parse, check_id, help, env)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class GatewayConfig:
    """How to reach the gateway and which correlation headers to use.

    Construct it directly (values are validated and normalised), or with :meth:`from_env` /
    :meth:`from_mapping`. ``api_key`` and ``extra_headers`` values never appear in ``repr``.
    """

    base_url: str | None = _setting(
        None,
        parse=parse.url,
        check_id="aigw.E001",
        env=True,
        help="gateway root, e.g. `http://localhost:8080/ai`; required for calls",
    )
    api_key: str | None = _setting(
        None,
        parse=parse.api_key,
        check_id="aigw.E008",
        env=True,
        help="sent as `Authorization: Bearer …`; may be a placeholder the gateway replaces",
    )
    proxy: str | None = _setting(
        None, parse=parse.url, check_id="aigw.E009", env=True, help="outbound HTTP proxy URL"
    )
    timeout: float = _setting(
        30.0,
        parse=parse.timeout,
        check_id="aigw.E002",
        env=True,
        help="seconds per attempt (read/write/pool); connect at most 5 s",
    )
    attempt_deadline: float = _setting(
        600.0,
        parse=parse.timeout,
        check_id="aigw.E024",
        env=True,
        help="wall-clock seconds for one attempt, from sending to the body's last byte",
    )
    call_deadline: float | None = _setting(
        None,
        parse=parse.optional_timeout,
        check_id="aigw.E025",
        env=True,
        help="wall-clock seconds for a whole call, retries and waits included; none by default",
    )
    disable_proxy: bool = _setting(
        False,
        parse=parse.boolean,
        check_id="aigw.E010",
        env=True,
        help="ignore `HTTP(S)_PROXY` from the environment",
    )
    max_retries: int = _setting(
        2,
        parse=parse.retries,
        check_id="aigw.E011",
        env=True,
        help="retries after the first attempt (0 to 10)",
    )
    max_connections: int = _setting(
        1000, parse=parse.connections, check_id="aigw.E030", env=True, help="connections per client"
    )
    model_prefix: str | None = _setting(
        None,
        parse=parse.model_prefix,
        check_id="aigw.E012",
        env=True,
        help="`openai` sends `gpt-4o-mini` as `openai/gpt-4o-mini`; a model with `/` is left alone",
    )
    header_profile: str = _setting(
        "generic",
        parse=parse.profile,
        check_id="aigw.E003",
        env=True,
        help="`generic`, `helicone`, `portkey`, `litellm`, `cloudflare`, `bifrost`, `envoy`, "
        "`openrouter`: adds that gateway's native headers",
    )
    profile_options: Mapping[str, str] = _setting(
        factory=dict,
        parse=parse.profile_options,
        check_id="aigw.E020",
        env=True,
        help="the header profile's options (a JSON object in the environment)",
    )
    request_id_header: str = _setting(
        "X-AI-Request-Id",
        parse=parse.header_name,
        check_id="aigw.E013",
        help="the request ID header's name, incoming and outgoing",
    )
    tenant_header: str = _setting(
        "X-AI-Tenant",
        parse=parse.header_name,
        check_id="aigw.E014",
        help="the tenant header's name, incoming and outgoing",
    )
    team_header: str = _setting(
        "X-AI-Team",
        parse=parse.header_name,
        check_id="aigw.E015",
        help="the team header's name, incoming and outgoing",
    )
    user_header: str = _setting(
        "X-AI-User",
        parse=parse.header_name,
        check_id="aigw.E021",
        help="the user header's name, incoming and outgoing",
    )
    session_header: str = _setting(
        "X-AI-Session",
        parse=parse.header_name,
        check_id="aigw.E022",
        help="the session header's name, incoming and outgoing",
    )
    incoming_request_id_headers: tuple[str, ...] = _setting(
        ("X-AI-Request-Id", "X-Request-Id"),
        parse=parse.header_names,
        check_id="aigw.E016",
        help="where an incoming request ID may come from, first valid wins",
    )
    trust_tenant_headers_from: tuple[str, ...] = _setting(
        (),
        parse=parse.cidrs,
        check_id="aigw.E004",
        env=True,
        help="CIDRs whose direct peers may set tenant and team by header",
    )
    tenant_resolver: TenantResolver | None = _setting(  # noqa: RUF009 (a field, as the others)
        None,
        parse=parse.resolver,
        check_id="aigw.E005",
        help="`(request) -> (tenant, team)` or a mapping with any of `tenant`, `team`, `user`, "
        "`session`, or its dotted path; wins over headers",
    )
    echo_request_id: bool = _setting(
        True,
        parse=parse.boolean,
        check_id="aigw.E017",
        help="set the request ID header on responses",
    )
    propagate_to: tuple[str, ...] = _setting(
        (),
        parse=parse.urls,
        check_id="aigw.E018",
        help="extra URL prefixes that also receive the headers",
    )
    extra_headers: Mapping[str, str] = _setting(
        factory=dict,
        parse=parse.extra_headers,
        check_id="aigw.E019",
        env=True,
        help="static headers for every gateway call (a JSON object in the environment); "
        "never a correlation header",
    )
    api_key_resolver: ApiKeyResolver | None = _setting(  # noqa: RUF009 (a field, as the others)
        None,
        parse=parse.resolver,
        check_id="aigw.E023",
        env=True,
        help="`(context) -> key or None`, or its dotted path: the gateway key of each call",
    )
    request_id_source: str = _setting(
        "header",
        parse=parse.request_id_source,
        check_id="aigw.E026",
        env=True,
        help="`header`, or `trace`: without a valid incoming ID, the active trace's ID",
    )
    otel_spans: bool = _setting(
        True,
        parse=parse.boolean,
        check_id="aigw.E027",
        env=True,
        help="a CLIENT span per gateway call when OpenTelemetry has a tracer provider",
    )
    otel_baggage: bool = _setting(
        False,
        parse=parse.boolean,
        check_id="aigw.E028",
        env=True,
        help="W3C `baggage` with the correlation fields on gateway calls (only there)",
    )
    otel_gateway_only: bool = _setting(
        True,
        parse=parse.boolean,
        check_id="aigw.E029",
        env=True,
        help="trace context only to the gateway: none on other hosts, even from the httpx instrumentation",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            parsed = _SETTINGS[f.name].parse(f.name, value)
            if parsed is not value:
                object.__setattr__(self, f.name, parsed)
        try:
            profile = _get_profile(self.header_profile, self.profile_options)
        except ValueError as exc:
            raise ConfigurationError(
                "profile_options", dict(self.profile_options), str(exc)
            ) from None
        reserved = {
            name.lower(): f"the configured {field_name}"
            for field_name, name in (
                ("request_id_header", self.request_id_header),
                ("tenant_header", self.tenant_header),
                ("team_header", self.team_header),
                ("user_header", self.user_header),
                ("session_header", self.session_header),
            )
        }
        for name in profile.native_names:
            reserved.setdefault(name.lower(), f"a header of the {profile.name!r} header profile")
        for name in self.extra_headers:
            parse.not_correlation("extra_headers", name, reserved)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key" and value is not None:
                shown.append("api_key='***'")
            elif f.name == "extra_headers":
                shown.append(f"extra_headers={ {k: '***' for k in value}!r}")
            elif f.name in _URL_FIELDS:
                shown.append(f"{f.name}={_masked_urls(value)!r}")
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
        if env is os.environ:
            _report_unread_variables(env)
        given = {key[len(prefix) :] for key in mapping if key.startswith(prefix)}
        values: dict[str, Any] = {}
        for var, name in _ENV_VARS.items():
            if name.upper() in given or name in overrides:
                continue  # a setting or an argument wins, so its variable is not even read
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = _SETTINGS[name].parse(var, raw)
        known = {f.name.upper(): f.name for f in dataclasses.fields(cls)}
        for key, raw in mapping.items():
            if not key.startswith(prefix):
                continue
            field_name = known.get(key[len(prefix) :])
            if field_name is None:
                known_keys = (f"{prefix}{name}" for name in known)
                raise ConfigurationError(
                    key, raw, f"is not a setting{_did_you_mean(key, known_keys)}"
                )
            values[field_name] = _SETTINGS[field_name].parse(key, raw)
        values.update(overrides)
        return cls(**values)


def _check_names(changes: Mapping[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(GatewayConfig)}
    for key in changes:
        if key not in names:
            raise ConfigurationError(
                key, changes[key], f"is not a GatewayConfig field{_did_you_mean(key, names)}"
            )


_URL_FIELDS = frozenset({"base_url", "proxy", "propagate_to"})


def _masked_urls(value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
    if isinstance(value, str):
        return _mask_url_credentials(value)
    return None if value is None else tuple(_mask_url_credentials(url) for url in value)


@dataclass(frozen=True, slots=True)
class _FieldSetting:
    """A field's setting with the names derived from the field's name, for every consumer."""

    name: str
    parse: Callable[[str, Any], Any]
    check_id: str
    help: str
    env_var: str | None  # AIGW_BASE_URL
    django_key: str  # settings.AIGW["BASE_URL"]
    flask_key: str  # app.config["AIGW_BASE_URL"]


#: Every setting, in field order: the one source of the environment table, the Django checks,
#: the Flask keys and the docs' tables.
_SETTINGS: Mapping[str, _FieldSetting] = {
    f.name: _FieldSetting(
        name=f.name,
        parse=setting.parse,
        check_id=setting.check_id,
        help=setting.help,
        env_var=f"{_ENV_PREFIX}{f.name.upper()}" if setting.env else None,
        django_key=f.name.upper(),
        flask_key=f"{_ENV_PREFIX}{f.name.upper()}",
    )
    for f in dataclasses.fields(GatewayConfig)
    for setting in [f.metadata[_METADATA_KEY]]
}
#: Fields that may come from the environment, by variable name.
_ENV_VARS: Mapping[str, str] = {
    s.env_var: name for name, s in _SETTINGS.items() if s.env_var is not None
}


def _missing_base_url(alternative: str = "") -> ConfigurationError:
    """The error for a gateway call (or client) with no gateway URL, saying where to set one."""
    fix = (
        'set the AIGW_BASE_URL environment variable, or settings.AIGW["BASE_URL"] (Django), '
        'or app.config["AIGW_BASE_URL"] (Flask)'
    )
    # In a Flask app that never registered the extension, app.config is never read: the likely
    # cause there. Flask is looked at only when the process imported it.
    flask: Any = sys.modules.get("flask")
    if flask is not None and flask.has_app_context() and "aigw" not in flask.current_app.extensions:
        fix = (
            "this Flask app has no AIGateway extension, so its app.config is not read; call "
            "AIGateway(app) or aigw.init_app(app) where the app is created"
        )
    return ConfigurationError("AIGW_BASE_URL", None, f"is not set: {fix}{alternative}")


_reported_variables: set[str] = set()
_reported_lock = threading.Lock()


def _report_unread_variables(environ: Mapping[str, str]) -> None:
    """Log each ``AIGW_*`` variable that nothing reads, once per process: a typo is silent else."""
    for var in list(environ):
        if not var.startswith(_ENV_PREFIX) or var in _ENV_VARS:
            continue
        with _reported_lock:
            if var in _reported_variables:
                continue
            _reported_variables.add(var)
        name = var[len(_ENV_PREFIX) :].lower()
        if name in _SETTINGS:
            _logger.warning(
                "The environment variable %s is ignored: %s is not read from the environment. "
                'Set it in code, in settings.AIGW["%s"] (Django) or in app.config["%s"] (Flask).',
                var,
                name,
                _SETTINGS[name].django_key,
                _SETTINGS[name].flask_key,
            )
        else:
            _logger.warning(
                "The environment variable %s is ignored: aigw-middleware reads no such variable%s",
                var,
                _did_you_mean(var, _ENV_VARS) or ".",
            )
