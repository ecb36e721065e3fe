"""The Django app ``aigw_middleware.django``: system checks, and settings for the shared clients."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

from .. import _shared
from .checks import _check_settings
from .conf import _SETTING, _conf

__all__ = ["AIGatewayAppConfig"]


class AIGatewayAppConfig(AppConfig):
    """Registers the ``aigw`` system checks and makes ``get_client()`` use ``settings.AIGW``."""

    name = "aigw_middleware.django"
    """What ``INSTALLED_APPS`` names."""
    label = "aigw"
    """The app label, the prefix of the system check ids (``aigw.E001``)."""
    verbose_name = "AI gateway correlation"
    """The app's name for people."""

    def ready(self) -> None:
        """Register the system checks; make the shared clients read ``settings.AIGW``."""
        checks.register(_check_settings)
        # A factory, so an invalid setting is reported by `manage.py check` rather than here.
        _shared.configure(lambda: _conf.config)
        setting_changed.connect(_on_setting_changed, dispatch_uid="aigw_middleware.django")


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == _SETTING:
        _conf.reload()
        _shared.configure(lambda: _conf.config)
