"""A wrong setup fails at start-up and says what to change.

Each test makes one mistake a newcomer makes, on purpose, and asserts when it is reported
(``manage.py check``, loading the middleware, ``init_app``, building the middleware or the SDK
client) and that the message names the setting as the user wrote it and the fix. Check ids are
asserted by their ``aigw.`` prefix only; the texts by what they must say.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.checks import CheckMessage
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from flask import Flask

from aigw_middleware import ConfigurationError, GatewayConfig, get_client
from aigw_middleware.asgi import AIGatewayMiddleware as ASGIMiddleware
from aigw_middleware.flask import AIGateway
from aigw_middleware.openai import AsyncOpenAI, OpenAI
from aigw_middleware.testing import FakeGateway

RESOLVER = "tests.djangoapp.resolvers.fixed_tenant"
GATEWAY = "http://127.0.0.1:8080/v1"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
OURS = "aigw_middleware.django.AIGatewayMiddleware"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mistake is made in settings; the developer's shell must not hide or add one."""
    for name in list(os.environ):
        if name.startswith(("AIGW_", "OPENAI_")):
            monkeypatch.delenv(name)


def aigw_messages(level: int = checks.DEBUG) -> list[CheckMessage]:
    """What ``manage.py check`` reports from this library, at ``level`` or above."""
    return [
        message
        for message in checks.run_checks()
        if (message.id or "").startswith("aigw.") and message.level >= level
    ]


def aigw_errors() -> list[CheckMessage]:
    return aigw_messages(checks.ERROR)


def text_of(message: CheckMessage) -> str:
    return f"{message.msg}\n{message.hint or ''}"


def is_a_sentence(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Z`'\"].*[.?]", text.strip(), re.S))


# ---------------------------------------------------------------------------------------------
# Django


def test_no_gateway_url_anywhere_is_a_check_error(settings: Any) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}

    [error] = aigw_errors()

    assert "BASE_URL" in error.msg


def test_no_aigw_setting_and_no_environment_is_a_check_error(settings: Any) -> None:
    del settings.AIGW

    assert [error for error in aigw_errors() if "BASE_URL" in text_of(error)]


def test_a_gateway_url_from_the_environment_is_enough(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}
    monkeypatch.setenv("AIGW_BASE_URL", GATEWAY)

    assert aigw_errors() == []


def test_missing_url_message_names_the_setting_and_the_environment_variable(
    settings: Any,
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}

    [error] = aigw_errors()

    assert 'settings.AIGW["BASE_URL"]' in text_of(error)
    assert "AIGW_BASE_URL" in text_of(error)


def test_a_top_level_aigw_base_url_setting_is_an_error_saying_use_the_aigw_dict(
    settings: Any,
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}
    settings.AIGW_BASE_URL = GATEWAY

    errors = [e for e in aigw_errors() if "AIGW_BASE_URL" in text_of(e)]

    assert errors, aigw_errors()
    assert any('AIGW = {"BASE_URL": ' in text_of(e) for e in errors), errors


def test_a_top_level_aigw_setting_is_reported_even_when_the_dict_has_the_url(
    settings: Any,
) -> None:
    settings.AIGW = {"BASE_URL": GATEWAY, "TENANT_RESOLVER": RESOLVER}
    settings.AIGW_TIMEOUT = 5

    [error] = aigw_errors()

    assert "AIGW_TIMEOUT" in error.msg
    assert 'AIGW = {"TIMEOUT": ' in text_of(error)


@pytest.mark.parametrize("key", ["BASEURL", "base_url", "Base_Url", "BASE-URL"])
def test_a_misspelt_aigw_key_is_an_error_with_did_you_mean(settings: Any, key: str) -> None:
    settings.AIGW = {key: GATEWAY, "TENANT_RESOLVER": RESOLVER}

    [error] = aigw_errors()

    assert key in error.msg
    assert "did you mean" in text_of(error).lower()
    assert "BASE_URL" in (error.hint or "")


def test_misspelt_keys_share_one_id_apart_from_the_fields_own_ids(settings: Any) -> None:
    def ids_for(aigw: dict[str, Any]) -> list[str | None]:
        settings.AIGW = {"TENANT_RESOLVER": RESOLVER, **aigw}
        return [error.id for error in aigw_errors()]

    upper = ids_for({"BASEURL": GATEWAY})
    lower = ids_for({"base_url": GATEWAY})
    resolver_typo = ids_for({"BASE_URL": GATEWAY, "TENANT_RESOLVE": RESOLVER})
    bad_url = ids_for({"BASE_URL": "ftp://gateway.internal"})
    bad_resolver = ids_for({"BASE_URL": GATEWAY, "TENANT_RESOLVER": "no_such_module.f"})

    assert upper == lower == resolver_typo
    assert upper != bad_url
    assert upper != bad_resolver


BAD_SETTINGS = [
    {"BASEURL": GATEWAY},
    {"BASE_URL": "gateway.internal:8080"},
    {"BASE_URL": GATEWAY, "TIMEOUT": "soon"},
    {"BASE_URL": GATEWAY, "MAX_RETRIES": 99},
    {"BASE_URL": GATEWAY, "HEADER_PROFILE": "kong"},
    {"BASE_URL": GATEWAY, "TRUST_TENANT_HEADERS_FROM": ["10.0.0.0/33"]},
    {"BASE_URL": GATEWAY, "TENANT_RESOLVER": "no_such_module.resolve"},
    {"BASE_URL": GATEWAY, "ECHO_REQUEST_ID": "sometimes"},
    {"BASE_URL": GATEWAY, "REQUEST_ID_HEADER": "X AI Id"},
]


@pytest.mark.parametrize("aigw", BAD_SETTINGS, ids=lambda aigw: ",".join(aigw))
def test_every_hint_is_a_sentence_naming_the_setting_as_written(
    settings: Any, aigw: dict[str, Any]
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER, **aigw}

    errors = aigw_errors()

    assert errors
    for error in errors:
        assert error.hint, error
        assert is_a_sentence(error.hint), error.hint
        assert is_a_sentence(error.msg), error.msg
        assert not re.search(r"\bit (unknown|not|must)\b", error.hint), error.hint
        assert any(f'AIGW["{key}"]' in text_of(error) for key in aigw), error


def test_a_bad_environment_variable_is_named_as_the_variable(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}
    monkeypatch.setenv("AIGW_BASE_URL", GATEWAY)
    monkeypatch.setenv("AIGW_TIMEOUT", "soon")

    [error] = aigw_errors()

    assert "AIGW_TIMEOUT" in error.msg
    assert is_a_sentence(error.hint or ""), error.hint


def test_middleware_without_the_app_installed_fails_when_django_loads_it(settings: Any) -> None:
    settings.AIGW = {"BASE_URL": GATEWAY}
    settings.INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]

    with pytest.raises(ImproperlyConfigured) as raised:
        WSGIHandler()

    assert '"aigw_middleware.django"' in str(raised.value)
    assert "INSTALLED_APPS" in str(raised.value)


def test_app_installed_without_the_middleware_is_a_check_warning(settings: Any) -> None:
    settings.AIGW = {"BASE_URL": GATEWAY, "TENANT_RESOLVER": RESOLVER}
    settings.MIDDLEWARE = [SESSIONS, AUTH]

    [warning] = aigw_messages()

    assert warning.level == checks.WARNING
    assert OURS in text_of(warning)
    assert "MIDDLEWARE" in text_of(warning)


def test_app_and_middleware_together_raise_no_warning(settings: Any) -> None:
    settings.AIGW = {"BASE_URL": GATEWAY, "TENANT_RESOLVER": RESOLVER}
    settings.MIDDLEWARE = [SESSIONS, AUTH, OURS]

    assert aigw_messages() == []


# ---------------------------------------------------------------------------------------------
# Flask


def test_init_app_without_a_gateway_url_raises_naming_the_key() -> None:
    app = Flask(__name__)

    with pytest.raises(ConfigurationError) as raised:
        AIGateway(app)

    assert 'app.config["AIGW_BASE_URL"]' in str(raised.value)
    assert "aigw" not in app.extensions


def test_init_app_takes_the_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", GATEWAY)
    app = Flask(__name__)

    AIGateway(app)

    assert "aigw" in app.extensions


def test_get_client_in_an_app_without_the_extension_says_to_call_init_app() -> None:
    app = Flask(__name__)
    app.config["AIGW_BASE_URL"] = GATEWAY

    with app.test_request_context("/"), pytest.raises(ConfigurationError) as raised:
        get_client().chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    assert "AIGateway(app)" in str(raised.value)
    assert "init_app(app)" in str(raised.value)


@pytest.mark.parametrize("key", ["BASE_URL", "aigw_base_url", "Aigw_Base_Url"])
def test_a_url_under_a_key_flask_does_not_read_is_named_with_did_you_mean(key: str) -> None:
    app = Flask(__name__)
    app.config[key] = GATEWAY

    with pytest.raises(ConfigurationError) as raised:
        AIGateway(app)

    message = str(raised.value)
    assert key in message
    assert "did you mean" in message.lower()
    assert "AIGW_BASE_URL" in message


def test_a_lower_case_aigw_key_is_an_error_even_when_the_url_is_set() -> None:
    app = Flask(__name__)
    app.config["AIGW_BASE_URL"] = GATEWAY
    app.config["aigw_timeout"] = 5

    with pytest.raises(ConfigurationError, match="aigw_timeout") as raised:
        AIGateway(app)

    assert "AIGW_TIMEOUT" in str(raised.value)


def test_a_django_style_key_beside_a_good_url_is_a_warning_with_did_you_mean(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    app.config["AIGW_BASE_URL"] = GATEWAY
    app.config["TENANT_RESOLVER"] = RESOLVER

    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        AIGateway(app)

    [record] = [r for r in caplog.records if "TENANT_RESOLVER" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "AIGW_TENANT_RESOLVER" in record.getMessage()


# ---------------------------------------------------------------------------------------------
# ASGI


async def inner_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


def test_a_misspelt_middleware_keyword_raises_when_the_middleware_is_built() -> None:
    with pytest.raises(ConfigurationError) as raised:
        ASGIMiddleware(inner_app, baseurl=GATEWAY)

    message = str(raised.value)
    assert "baseurl" in message
    assert "did you mean" in message.lower()
    assert "base_url" in message


def test_a_misspelt_middleware_keyword_is_logged_at_error_for_servers_that_hide_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="aigw_middleware"),
        pytest.raises(ConfigurationError),
    ):
        ASGIMiddleware(inner_app, baseurl=GATEWAY)

    assert any("baseurl" in r.getMessage() and r.levelno >= logging.ERROR for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# OpenAI SDK wrapper


@pytest.mark.parametrize("cls", [OpenAI, AsyncOpenAI])
def test_sdk_client_without_a_gateway_url_raises_naming_aigw_base_url(cls: type[Any]) -> None:
    with pytest.raises(ConfigurationError, match="AIGW_BASE_URL"):
        cls()


def test_sdk_client_with_an_explicit_base_url_needs_no_gateway_config(
    fake_gateway: FakeGateway,
) -> None:
    client = OpenAI(base_url=fake_gateway.base_url)

    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]

    assert fake_gateway.requests[0].headers["x-ai-request-id"]
    client.close()


def test_sdk_client_accepts_the_config_positionally(fake_gateway: FakeGateway) -> None:
    config = GatewayConfig.from_env({}, base_url=fake_gateway.base_url)

    client = OpenAI(config)
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]

    assert client.gateway_config == config
    assert len(fake_gateway.requests) == 1
    client.close()


def test_sdk_client_with_something_else_positional_says_config_or_keywords() -> None:
    with pytest.raises(TypeError, match="config="):
        OpenAI("sk-not-a-config")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Everywhere: the environment


@pytest.fixture
def aigw_records(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="aigw_middleware"):
        yield caplog


def test_an_unknown_aigw_environment_variable_is_a_warning_with_did_you_mean(
    monkeypatch: pytest.MonkeyPatch, aigw_records: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIGW_BASEURL", GATEWAY)

    GatewayConfig.from_env()
    GatewayConfig.from_env()

    warned = [r for r in aigw_records.records if "AIGW_BASEURL" in r.getMessage()]
    assert len(warned) == 1, "reported once, not once per config"
    assert warned[0].levelno == logging.WARNING
    assert "did you mean" in warned[0].getMessage().lower()
    assert "AIGW_BASE_URL" in warned[0].getMessage().replace("AIGW_BASEURL", "")


def test_an_aigw_variable_for_a_field_without_one_says_where_it_belongs(
    monkeypatch: pytest.MonkeyPatch, aigw_records: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIGW_ECHO_REQUEST_ID", "false")

    GatewayConfig.from_env()

    [record] = [r for r in aigw_records.records if "AIGW_ECHO_REQUEST_ID" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "echo_request_id" in record.getMessage()


def test_known_aigw_variables_are_not_reported(
    monkeypatch: pytest.MonkeyPatch, aigw_records: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", GATEWAY)
    monkeypatch.setenv("AIGW_TIMEOUT", "5")

    GatewayConfig.from_env()

    assert aigw_records.records == []
