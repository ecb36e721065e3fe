"""GatewayConfig: defaults, environment, framework mappings, validation, repr."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from aigw_middleware import ConfigurationError, GatewayConfig
from aigw_middleware.config import _ENV_VARS, _SETTINGS
from tests import tenancy_fixture


def test_defaults_match_the_design() -> None:
    config = GatewayConfig()
    assert config.base_url is None
    assert config.timeout == 30.0
    assert config.max_retries == 2
    assert config.max_connections == 1000
    assert config.header_profile == "generic"
    assert config.incoming_request_id_headers == ("X-AI-Request-Id", "X-Request-Id")
    assert config.trust_tenant_headers_from == ()
    assert config.echo_request_id is True
    assert config.extra_headers == {}


def test_from_env_reads_every_documented_variable() -> None:
    config = GatewayConfig.from_env(
        {
            "AIGW_BASE_URL": "http://localhost:8080/ai/",
            "AIGW_API_KEY": "placeholder",
            "AIGW_PROXY": "http://127.0.0.1:3128",
            "AIGW_TIMEOUT": "12.5",
            "AIGW_DISABLE_PROXY": "true",
            "AIGW_MAX_RETRIES": "4",
            "AIGW_MAX_CONNECTIONS": "250",
            "AIGW_MODEL_PREFIX": "openai",
            "AIGW_HEADER_PROFILE": "Portkey",
            "AIGW_TRUST_TENANT_HEADERS_FROM": "10.0.0.0/8, 127.0.0.1",
        }
    )
    assert config.base_url == "http://localhost:8080/ai"
    assert config.api_key == "placeholder"
    assert config.proxy == "http://127.0.0.1:3128"
    assert config.timeout == 12.5
    assert config.disable_proxy is True
    assert config.max_retries == 4
    assert config.max_connections == 250
    assert config.model_prefix == "openai"
    assert config.header_profile == "portkey"
    assert config.trust_tenant_headers_from == ("10.0.0.0/8", "127.0.0.1/32")


def test_extra_headers_from_the_environment_are_a_json_object() -> None:
    env = {"AIGW_EXTRA_HEADERS": '{"x-portkey-provider": "openai", "x-gw-key": "k"}'}
    assert GatewayConfig.from_env(env).extra_headers == {
        "x-portkey-provider": "openai",
        "x-gw-key": "k",
    }
    with pytest.raises(ConfigurationError, match="AIGW_EXTRA_HEADERS") as caught:
        GatewayConfig.from_env({"AIGW_EXTRA_HEADERS": '{"x-gw-key": "SECRET"'})
    assert "SECRET" not in str(caught.value)


def test_empty_environment_variables_count_as_unset() -> None:
    assert GatewayConfig.from_env({"AIGW_BASE_URL": "", "AIGW_TIMEOUT": " "}) == GatewayConfig()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AIGW_TIMEOUT", "abc"),
        ("AIGW_TIMEOUT", "0"),
        ("AIGW_TIMEOUT", "-1"),
        ("AIGW_MAX_RETRIES", "two"),
        ("AIGW_MAX_RETRIES", "99"),
        ("AIGW_MAX_CONNECTIONS", "0"),
        ("AIGW_MAX_CONNECTIONS", "many"),
        ("AIGW_BASE_URL", "localhost:8080"),
        ("AIGW_BASE_URL", "ftp://gateway"),
        ("AIGW_BASE_URL", "http://gw/ai?x=1"),
        ("AIGW_HEADER_PROFILE", "kong"),
        ("AIGW_TRUST_TENANT_HEADERS_FROM", "10.0.0.0/33"),
        ("AIGW_DISABLE_PROXY", "maybe"),
        ("AIGW_MODEL_PREFIX", "a/b"),
    ],
)
def test_bad_environment_values_name_the_variable_and_the_value(var: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig.from_env({var: value})
    assert caught.value.key == var
    assert str(caught.value).startswith(f"{var}={value!r}")


def test_timeout_abc_names_aigw_timeout() -> None:
    with pytest.raises(ConfigurationError, match=r"AIGW_TIMEOUT='abc'"):
        GatewayConfig.from_env({"AIGW_TIMEOUT": "abc", "AIGW_BASE_URL": "http://127.0.0.1:1"})


def test_precedence_is_arguments_then_mapping_then_environment() -> None:
    env = {"AIGW_BASE_URL": "http://env", "AIGW_TIMEOUT": "5", "AIGW_MAX_RETRIES": "1"}
    mapping = {"BASE_URL": "http://mapping", "TIMEOUT": 7}
    config = GatewayConfig.from_mapping(mapping, environ=env, base_url="http://argument")
    assert config.base_url == "http://argument"
    assert config.timeout == 7.0
    assert config.max_retries == 1


def test_a_setting_or_argument_hides_a_bad_environment_variable() -> None:
    env = {"AIGW_TIMEOUT": "soon", "AIGW_MAX_RETRIES": "many"}
    config = GatewayConfig.from_mapping({"TIMEOUT": 3}, environ=env, max_retries=1)
    assert (config.timeout, config.max_retries) == (3.0, 1)


def test_flask_style_prefixed_mapping_ignores_other_keys() -> None:
    app_config = {"AIGW_BASE_URL": "http://gw/ai", "AIGW_TIMEOUT": "3", "SECRET_KEY": "x"}
    config = GatewayConfig.from_mapping(app_config, prefix="AIGW_", environ={})
    assert (config.base_url, config.timeout) == ("http://gw/ai", 3.0)


def test_flask_style_bad_value_names_the_prefixed_key() -> None:
    with pytest.raises(ConfigurationError, match="AIGW_TIMEOUT"):
        GatewayConfig.from_mapping({"AIGW_TIMEOUT": "abc"}, prefix="AIGW_", environ={})


def test_unknown_keys_are_reported() -> None:
    with pytest.raises(ConfigurationError, match="BASE_ULR"):
        GatewayConfig.from_mapping({"BASE_ULR": "http://gw"}, environ={})
    with pytest.raises(ConfigurationError, match="not a GatewayConfig field"):
        GatewayConfig.from_env({}, base_ulr="http://gw")


def test_mapping_accepts_typed_values() -> None:
    config = GatewayConfig.from_mapping(
        {
            "TRUST_TENANT_HEADERS_FROM": ["10.0.0.0/8"],
            "INCOMING_REQUEST_ID_HEADERS": ["X-Correlation-Id"],
            "PROPAGATE_TO": ["http://127.0.0.1:9000/tools/"],
            "EXTRA_HEADERS": {"x-portkey-provider": "openai"},
            "ECHO_REQUEST_ID": False,
            "DISABLE_PROXY": True,
            "MAX_RETRIES": 0,
        },
        environ={},
    )
    assert config.trust_tenant_headers_from == ("10.0.0.0/8",)
    assert config.incoming_request_id_headers == ("X-Correlation-Id",)
    assert config.propagate_to == ("http://127.0.0.1:9000/tools",)
    assert config.extra_headers == {"x-portkey-provider": "openai"}
    assert (config.echo_request_id, config.disable_proxy, config.max_retries) == (False, True, 0)


def test_tenant_resolver_from_a_dotted_path() -> None:
    for path in ("tests.tenancy_fixture.resolve", "tests.tenancy_fixture:resolve"):
        config = GatewayConfig.from_mapping({"TENANT_RESOLVER": path}, environ={})
        assert config.tenant_resolver is tenancy_fixture.resolve


@pytest.mark.parametrize(
    "path", ["tests.no_such_module.resolve", "tests.tenancy_fixture.missing", "nodots", "x:"]
)
def test_unimportable_resolver_fails_naming_the_key(path: str) -> None:
    with pytest.raises(ConfigurationError, match="TENANT_RESOLVER"):
        GatewayConfig.from_mapping({"TENANT_RESOLVER": path}, environ={})


def test_resolver_that_is_not_callable_fails() -> None:
    with pytest.raises(ConfigurationError, match="does not name a callable"):
        GatewayConfig(tenant_resolver="tests.tenancy_fixture.NOT_CALLABLE")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id_header", "X Bad"),
        ("incoming_request_id_headers", ()),
        ("extra_headers", {"x-ok": "line\nbreak"}),
        ("extra_headers", ["not", "a", "mapping"]),
        ("max_retries", True),
        ("timeout", float("nan")),
        ("api_key", "two\nlines"),
        ("propagate_to", ["not a url"]),
    ],
)
def test_direct_construction_validates_too(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        GatewayConfig(**{field: value})


def test_repr_never_shows_secrets() -> None:
    config = GatewayConfig(
        base_url="http://gw",
        api_key="sk-live-SECRET",
        proxy="http://user:pa55word@proxy.local:3128",
        extra_headers={"x-portkey-api-key": "pk-SECRET"},
    )
    text = repr(config)
    assert "SECRET" not in text
    assert "pa55word" not in text
    assert "api_key='***'" in text
    assert "x-portkey-api-key" in text


def test_repr_masks_credentials_in_every_url() -> None:
    config = GatewayConfig(
        base_url="https://gwuser:hunter2@gw.example/ai",
        proxy="http://proxyuser:pa55word@proxy.local:3128",
        propagate_to=["https://svc:s3cret@other.example/x"],
    )

    text = repr(config)

    for secret in ("hunter2", "pa55word", "s3cret", "gwuser", "proxyuser"):
        assert secret not in text
    assert "base_url='https://***@gw.example/ai'" in text
    assert "proxy='http://***@proxy.local:3128'" in text
    assert "propagate_to=('https://***@other.example/x',)" in text


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"AIGW_PROXY": "ftp://user:pa55word@proxy.local"}, "AIGW_PROXY"),
        ({"AIGW_PROXY": "http://user:pa55word@proxy.local/?q=1"}, "AIGW_PROXY"),
        ({"AIGW_BASE_URL": "https://user:pa55word@gw.example/ai#frag"}, "AIGW_BASE_URL"),
        ({"AIGW_BASE_URL": "https://user:pa55word@[::1/ai"}, "AIGW_BASE_URL"),
        (
            {"AIGW_BASE_URL": "https://user:pa55word" + "x" * 200 + "@gw.example/?q=1"},
            "AIGW_BASE_URL",
        ),
        ({"AIGW_BASE_URL": "https://user:p@55word@gw.example/ai?x"}, "AIGW_BASE_URL"),
    ],
)
def test_configuration_errors_mask_credentials_in_urls(settings: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig.from_env(settings)

    error = caught.value
    assert error.key == key
    for shown in (str(error), repr(error), repr(error.value)):
        assert "55word" not in shown
        assert "user" not in shown


def test_a_bad_propagate_to_url_is_masked_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig(propagate_to=["https://svc:s3cret@other.example/x?q"])

    assert "s3cret" not in str(caught.value)
    assert "***@other.example" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "X-AI-Request-Id",
        "x-ai-tenant",
        "X-AI-TEAM",
        "X-AI-User",
        "X-AI-Session",
        "Helicone-Property-Tenant",
        "Helicone-User-Id",
        "x-portkey-metadata",
        "x-portkey-trace-id",
        "x-litellm-trace-id",
        "x-litellm-spend-logs-metadata",
        "cf-aig-metadata",
    ],
)
def test_extra_headers_may_not_set_a_correlation_header(name: str) -> None:
    with pytest.raises(ConfigurationError, match="correlation header") as caught:
        GatewayConfig(extra_headers={name: "acme"})

    assert caught.value.key == "extra_headers"
    assert name in str(caught.value)


def test_extra_headers_may_not_set_a_renamed_correlation_header() -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig(tenant_header="X-Org", extra_headers={"x-org": "acme"})

    assert "x-org is a correlation header (the configured tenant_header)" in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"user_header": "X-End-User"}, "x-end-user"),
        ({"session_header": "X-Conversation"}, "X-Conversation"),
        ({"header_profile": "envoy", "profile_options": {"tenant_header": "x-org-id"}}, "X-Org-Id"),
    ],
)
def test_extra_headers_may_not_set_a_configured_user_session_or_profile_header(
    settings: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigurationError, match="is a correlation header") as caught:
        GatewayConfig(**settings, extra_headers={name: "pinned"})
    assert name in str(caught.value)


def test_a_correlation_header_in_extra_headers_is_named_by_its_setting_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig.from_env({"AIGW_EXTRA_HEADERS": '{"X-AI-Tenant": "acme"}'})
    assert caught.value.key == "AIGW_EXTRA_HEADERS"

    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig.from_mapping({"AIGW_EXTRA_HEADERS": {"x-portkey-metadata": "{}"}}, "AIGW_")
    assert caught.value.key == "AIGW_EXTRA_HEADERS"


def test_other_extra_headers_are_accepted() -> None:
    headers = {"x-portkey-api-key": "pk-1", "x-portkey-config": "cfg", "X-Custom": "1"}
    assert GatewayConfig(extra_headers=headers).extra_headers == headers


def test_configuration_error_hides_api_key_values() -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayConfig.from_env({"AIGW_API_KEY": "sk-SECRET\nmore"})
    assert "SECRET" not in str(caught.value)


def test_replace_validates_the_change() -> None:
    config = GatewayConfig(base_url="http://gw")
    assert config.replace(timeout=3).timeout == 3.0
    with pytest.raises(ConfigurationError, match="timeout"):
        config.replace(timeout="soon")


# One source per setting: the docs and the Flask docstring agree with the fields' metadata. ----

DOCS = Path(__file__).resolve().parents[1] / "docs"


def docs_table(page: str) -> list[list[str]]:
    """The rows of the first table of a page of the docs, as cells."""
    text = (DOCS / page).read_text()
    lines = text[text.index("\n|") + 1 :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_configuration_table_is_the_fields_metadata() -> None:
    rows = docs_table("reference/configuration.md")
    assert [row[0].strip("`") for row in rows] == list(_SETTINGS)
    for row in rows:
        setting = _SETTINGS[row[0].strip("`")]
        assert row[2].strip("`") == (setting.env_var or ""), setting.name
        assert row[3] == setting.help, setting.name


def test_django_and_flask_keys_are_the_field_names_as_the_docs_say() -> None:
    """docs/frameworks: Django's keys are the fields in upper case, Flask's add ``AIGW_``, and an
    environment variable, where a setting has one, has Flask's name."""
    for name, setting in _SETTINGS.items():
        assert setting.django_key == name.upper()
        assert setting.flask_key == f"AIGW_{name.upper()}"
        assert setting.env_var in (None, setting.flask_key)


def test_the_flask_init_app_docstring_lists_every_key() -> None:
    flask = pytest.importorskip("aigw_middleware.flask")
    doc = flask.AIGateway.init_app.__doc__
    assert doc is not None
    assert re.findall(r"``(AIGW_\w+)``", doc) == [s.flask_key for s in _SETTINGS.values()]


def test_the_system_checks_table_lists_one_id_per_setting() -> None:
    ids = {row[0].strip("`"): row[1] for row in docs_table("reference/checks.md")}
    for setting in _SETTINGS.values():
        assert setting.django_key in ids.pop(setting.check_id), setting.name
    assert sorted(ids) == [
        "aigw.E006",
        "aigw.E007",
        "aigw.E100",
        "aigw.E101",
        "aigw.W001",
        "aigw.W002",
        "aigw.W100",
    ]


def test_each_setting_has_its_own_check_id() -> None:
    ids = [s.check_id for s in _SETTINGS.values()]
    assert len(set(ids)) == len(ids)


def test_the_environment_variables_are_the_settings_marked_for_it() -> None:
    assert {s.env_var: s.name for s in _SETTINGS.values() if s.env_var} == _ENV_VARS
    assert set(_ENV_VARS) == {
        "AIGW_BASE_URL",
        "AIGW_API_KEY",
        "AIGW_PROXY",
        "AIGW_TIMEOUT",
        "AIGW_ATTEMPT_DEADLINE",
        "AIGW_CALL_DEADLINE",
        "AIGW_DISABLE_PROXY",
        "AIGW_MAX_RETRIES",
        "AIGW_MAX_CONNECTIONS",
        "AIGW_MODEL_PREFIX",
        "AIGW_HEADER_PROFILE",
        "AIGW_PROFILE_OPTIONS",
        "AIGW_TRUST_TENANT_HEADERS_FROM",
        "AIGW_EXTRA_HEADERS",
        "AIGW_API_KEY_RESOLVER",
        "AIGW_REQUEST_ID_SOURCE",
        "AIGW_OTEL_SPANS",
        "AIGW_OTEL_BAGGAGE",
        "AIGW_OTEL_GATEWAY_ONLY",
    }


def test_the_opentelemetry_settings_come_from_the_environment_and_settings_win() -> None:
    environ = {
        "AIGW_REQUEST_ID_SOURCE": "trace",
        "AIGW_OTEL_SPANS": "false",
        "AIGW_OTEL_BAGGAGE": "true",
        "AIGW_OTEL_GATEWAY_ONLY": "0",
    }
    config = GatewayConfig.from_env(environ)
    assert (config.request_id_source, config.otel_spans) == ("trace", False)
    assert (config.otel_baggage, config.otel_gateway_only) == (True, False)
    flask_keys = GatewayConfig.from_mapping(
        {"AIGW_REQUEST_ID_SOURCE": "header", "AIGW_OTEL_SPANS": True}, "AIGW_", environ=environ
    )
    assert (flask_keys.request_id_source, flask_keys.otel_spans) == ("header", True)
    with pytest.raises(ConfigurationError, match="AIGW_REQUEST_ID_SOURCE"):
        GatewayConfig.from_env({"AIGW_REQUEST_ID_SOURCE": "traceparent"})


def test_user_session_profile_options_and_key_resolver_settings() -> None:
    config = GatewayConfig.from_mapping(
        {"USER_HEADER": "X-User", "SESSION_HEADER": "X-Conversation"},
        environ={
            "AIGW_HEADER_PROFILE": "envoy",
            "AIGW_PROFILE_OPTIONS": '{"tenant_header": "x-org-id"}',
            "AIGW_API_KEY_RESOLVER": "tests.tenancy_fixture.tenant_key",
        },
    )
    assert (config.user_header, config.session_header) == ("X-User", "X-Conversation")
    assert config.profile_options == {"tenant_header": "x-org-id"}
    assert config.api_key_resolver is tenancy_fixture.tenant_key
    defaults = GatewayConfig()
    assert (defaults.user_header, defaults.session_header) == ("X-AI-User", "X-AI-Session")
    assert (defaults.profile_options, defaults.api_key_resolver) == ({}, None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"PROFILE_OPTIONS": {"session_name": "x"}}, "has no option 'session_name'"),
        (
            {"HEADER_PROFILE": "envoy", "PROFILE_OPTIONS": {"tenant_header": "x org"}},
            "must be a header name",
        ),
        ({"PROFILE_OPTIONS": "not json"}, "must be a JSON object"),
        ({"PROFILE_OPTIONS": {"send_tags": True}}, "mapping of option names to strings"),
        ({"API_KEY_RESOLVER": "tests.tenancy_fixture.missing"}, "cannot be imported"),
        ({"SESSION_HEADER": "X Session"}, "valid HTTP header name"),
    ],
)
def test_bad_attribution_settings_name_the_setting(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        GatewayConfig.from_mapping(settings, environ={})
    assert caught.value.key.upper() in {key for key in settings} | {"PROFILE_OPTIONS"}
