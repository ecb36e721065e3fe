"""The app and its settings: get_client() / get_async_client() follow settings.AIGW."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps

from aigw_middleware import bind_context, get_async_client, get_client
from aigw_middleware.config import _ENV_VARS
from aigw_middleware.django.conf import _conf
from aigw_middleware.errors import ConfigurationError
from aigw_middleware.testing import FakeGateway

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_aigw_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def test_app_is_installed_as_aigw_middleware_django() -> None:
    config = apps.get_app_config("aigw")

    assert config.name == "aigw_middleware.django"


def test_get_client_calls_the_gateway_named_in_settings(
    settings: Any, fake_gateway: FakeGateway
) -> None:
    settings.AIGW = {"BASE_URL": fake_gateway.base_url, "API_KEY": "sk-from-settings"}

    with bind_context(request_id="req-script", tenant="acme"):
        get_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    headers = fake_gateway.requests[0].headers
    assert headers["authorization"] == "Bearer sk-from-settings"
    assert headers["x-ai-request-id"] == "req-script"
    assert headers["x-ai-tenant"] == "acme"


async def test_get_async_client_calls_the_gateway_named_in_settings(
    settings: Any, fake_gateway: FakeGateway
) -> None:
    settings.AIGW = {"BASE_URL": fake_gateway.base_url}

    with bind_context(request_id="req-async-script"):
        await get_async_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert fake_gateway.requests[0].headers["x-ai-request-id"] == "req-async-script"


def test_changed_setting_replaces_the_shared_client(settings: Any) -> None:
    settings.AIGW = {"BASE_URL": "http://127.0.0.1:9001/v1"}
    before = get_client()

    settings.AIGW = {"BASE_URL": "http://127.0.0.1:9002/v1"}

    assert get_client() is not before
    assert get_client().config.base_url == "http://127.0.0.1:9002/v1"


def test_environment_fills_what_settings_leave_out(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", "http://127.0.0.1:9001/v1")
    monkeypatch.setenv("AIGW_TIMEOUT", "7")
    settings.AIGW = {"BASE_URL": "http://127.0.0.1:9002/v1"}

    config = _conf.config

    assert config.base_url == "http://127.0.0.1:9002/v1"
    assert config.timeout == 7.0


def test_setting_overrides_an_invalid_environment_variable(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIGW_TIMEOUT", "soon")
    settings.AIGW = {"TIMEOUT": 3}

    assert _conf.config.timeout == 3.0


def test_aigw_must_be_a_dict(settings: Any) -> None:
    settings.AIGW = "http://127.0.0.1:9001/v1"

    with pytest.raises(ConfigurationError) as caught:
        _conf.build()
    assert caught.value.key == "AIGW"


def test_unset_aigw_means_environment_only(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGW_BASE_URL", "http://127.0.0.1:9003/v1")
    del settings.AIGW

    assert _conf.config.base_url == "http://127.0.0.1:9003/v1"
