"""System checks: every bad gateway setting is reported by `manage.py check` with a stable id."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from aigw_middleware.config import _ENV_VARS
from aigw_middleware.django.checks import _check_settings

RESOLVER = "tests.djangoapp.resolvers.fixed_tenant"
GOOD = {"BASE_URL": "http://127.0.0.1:8080/v1", "TENANT_RESOLVER": RESOLVER}
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
OURS = "aigw_middleware.django.AIGatewayMiddleware"


@pytest.fixture(autouse=True)
def _no_aigw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def ids(settings: Any) -> list[str]:
    return [message.id for message in _check_settings(None)]


@pytest.mark.parametrize(
    ("bad", "check_id"),
    [
        ({"BASE_URL": "ftp://gateway.internal"}, "aigw.E001"),
        ({"BASE_URL": 8080}, "aigw.E001"),
        ({"TIMEOUT": 0}, "aigw.E002"),
        ({"TIMEOUT": "soon"}, "aigw.E002"),
        ({"HEADER_PROFILE": "kong"}, "aigw.E003"),
        ({"TRUST_TENANT_HEADERS_FROM": ["10.0.0.0/33"]}, "aigw.E004"),
        ({"TENANT_RESOLVER": "tests.djangoapp.resolvers.missing"}, "aigw.E005"),
        ({"TENANT_RESOLVER": "no_such_module.resolve"}, "aigw.E005"),
        ({"TENANT_RESOLVER": "tests.djangoapp.resolvers.NOT_CALLABLE"}, "aigw.E005"),
        ({"API_KEY": "sk\nforged"}, "aigw.E008"),
        ({"PROXY": "socks"}, "aigw.E009"),
        ({"DISABLE_PROXY": "maybe"}, "aigw.E010"),
        ({"MAX_RETRIES": 99}, "aigw.E011"),
        ({"MAX_CONNECTIONS": 0}, "aigw.E030"),
        ({"MODEL_PREFIX": "a/b"}, "aigw.E012"),
        ({"REQUEST_ID_HEADER": "bad header"}, "aigw.E013"),
        ({"TENANT_HEADER": "bad:header"}, "aigw.E014"),
        ({"TEAM_HEADER": ""}, "aigw.E015"),
        ({"INCOMING_REQUEST_ID_HEADERS": []}, "aigw.E016"),
        ({"ECHO_REQUEST_ID": "sometimes"}, "aigw.E017"),
        ({"PROPAGATE_TO": ["ftp://elsewhere"]}, "aigw.E018"),
        ({"EXTRA_HEADERS": {"x-auth": "a\nb"}}, "aigw.E019"),
        ({"REQUEST_ID_SOURCE": "span"}, "aigw.E026"),
        ({"OTEL_SPANS": "sometimes"}, "aigw.E027"),
        ({"OTEL_BAGGAGE": 2}, "aigw.E028"),
        ({"OTEL_GATEWAY_ONLY": "maybe"}, "aigw.E029"),
        ({"BASEURL": "http://127.0.0.1:8080/v1"}, "aigw.E007"),
    ],
)
def test_invalid_setting_is_an_error_with_its_id(
    settings: Any, bad: dict[str, Any], check_id: str
) -> None:
    settings.AIGW = {**GOOD, **bad}

    assert ids(settings) == [check_id]


@pytest.mark.parametrize(
    ("var", "raw", "check_id"),
    [
        ("AIGW_BASE_URL", "gateway.internal:8080", "aigw.E001"),
        ("AIGW_TIMEOUT", "-1", "aigw.E002"),
        ("AIGW_HEADER_PROFILE", "kong", "aigw.E003"),
        ("AIGW_TRUST_TENANT_HEADERS_FROM", "10.0.0.0/8,example.com", "aigw.E004"),
        ("AIGW_MAX_RETRIES", "many", "aigw.E011"),
        ("AIGW_EXTRA_HEADERS", "not json", "aigw.E019"),
    ],
)
def test_invalid_environment_variable_is_an_error_with_its_id(
    settings: Any, monkeypatch: pytest.MonkeyPatch, var: str, raw: str, check_id: str
) -> None:
    settings.AIGW = {"TENANT_RESOLVER": RESOLVER}
    monkeypatch.setenv(var, raw)

    [error] = _check_settings(None)

    assert error.id == check_id
    assert var in error.msg


def test_aigw_that_is_not_a_dict_is_e006(settings: Any) -> None:
    settings.AIGW = ["http://127.0.0.1:8080/v1"]

    assert ids(settings) == ["aigw.E006"]


def test_every_bad_value_is_reported_in_one_run(settings: Any) -> None:
    settings.AIGW = {**GOOD, "TIMEOUT": 0, "HEADER_PROFILE": "kong"}

    assert ids(settings) == ["aigw.E002", "aigw.E003"]


def test_setting_overrides_a_bad_environment_variable(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_TIMEOUT", "soon")
    settings.AIGW = {**GOOD, "TIMEOUT": 5}

    assert ids(settings) == []


def test_error_names_the_key_and_hides_the_api_key(settings: Any) -> None:
    settings.AIGW = {**GOOD, "API_KEY": "sk-secret\nsecond-line"}

    [error] = _check_settings(None)

    assert error.id == "aigw.E008"
    assert "API_KEY" in error.msg
    assert "sk-secret" not in f"{error.msg} {error.hint}"


def test_no_resolver_and_no_trusted_networks_is_w001(settings: Any) -> None:
    settings.AIGW = {"BASE_URL": "http://127.0.0.1:8080/v1"}

    assert ids(settings) == ["aigw.W001"]


def test_trusted_networks_alone_are_enough_for_a_tenant(settings: Any) -> None:
    settings.AIGW = {
        "BASE_URL": "http://127.0.0.1:8080/v1",
        "TRUST_TENANT_HEADERS_FROM": ["10.0.0.0/8"],
    }

    assert ids(settings) == []


def test_middleware_before_authentication_with_a_resolver_is_w002(settings: Any) -> None:
    settings.AIGW = GOOD
    settings.MIDDLEWARE = [SESSIONS, OURS, AUTH]

    assert ids(settings) == ["aigw.W002"]


def test_middleware_after_authentication_is_fine(settings: Any) -> None:
    settings.AIGW = GOOD
    settings.MIDDLEWARE = [SESSIONS, AUTH, OURS]

    assert ids(settings) == []


def test_checks_are_registered_with_django(settings: Any) -> None:
    settings.AIGW = {**GOOD, "HEADER_PROFILE": "kong"}

    assert "aigw.E003" in [message.id for message in run_checks()]
