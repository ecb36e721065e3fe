"""The gateway settings of a Django project: ``settings.AIGW``, then ``AIGW_*`` variables.

Read lazily and cached until the ``AIGW`` setting changes (the app's ``setting_changed``
receiver calls :meth:`_Settings.reload`), so ``override_settings(AIGW=...)`` works in tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from ..config import GatewayConfig
from ..errors import ConfigurationError
from ..inbound import InboundPolicy

__all__: list[str] = []

#: The name of the Django setting: a dict of GatewayConfig fields in upper case.
_SETTING = "AIGW"


class _Settings:
    """Typed access to the gateway settings; :data:`_conf` is the one instance."""

    def __init__(self) -> None:
        self._loaded: tuple[GatewayConfig, InboundPolicy] | None = None

    @property
    def AIGW(self) -> Mapping[str, Any]:
        """``settings.AIGW`` as it is now (``{}`` when unset)."""
        value = getattr(settings, _SETTING, None)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(_SETTING, value, "must be a dict of gateway settings")
        return value

    def build(self) -> GatewayConfig:
        """A fresh :class:`GatewayConfig` from ``settings.AIGW`` with the environment as fallback.

        Raises :class:`~aigw_middleware.errors.ConfigurationError` for an invalid value.
        """
        return GatewayConfig.from_mapping(self.AIGW, environ=os.environ)

    def loaded(self) -> tuple[GatewayConfig, InboundPolicy]:
        """The config and the inbound policy built from it, cached until :meth:`reload`."""
        loaded = self._loaded
        if loaded is None:
            config = self.build()
            loaded = self._loaded = (config, InboundPolicy.from_config(config))
        return loaded

    @property
    def config(self) -> GatewayConfig:
        """The cached :class:`GatewayConfig`."""
        return self.loaded()[0]

    def reload(self) -> None:
        """Forget the cached config; the next access reads the settings again."""
        self._loaded = None


_conf = _Settings()
