"""The gateway settings of a Django project: ``settings.AIGW``, then ``AIGW_*`` variables.

Read lazily and cached until the ``AIGW`` setting changes (the app's ``setting_changed``
receiver calls :meth:`_Settings.reload`), so ``override_settings(AIGW=...)`` works in tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from django.conf import settings

from ..config import GatewayConfig
from ..errors import ConfigurationError
from ..inbound import InboundPolicy

__all__: list[str] = []

#: The name of the Django setting: a dict of GatewayConfig fields in upper case.
_SETTING = "AIGW"


class _Loaded(NamedTuple):
    """The settings as the middleware reads them per request (a tuple: unpacked in one step)."""

    config: GatewayConfig
    policy: InboundPolicy
    headers_only: bool
    """No resolver and no trusted peer: only the request's headers decide its context."""
    echo: tuple[str, str] | None
    """The response header that echoes the request ID, as lower-case key and name; None for
    no echo."""


class _Settings:
    """Typed access to the gateway settings; :data:`_conf` is the one instance."""

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None

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

    def loaded(self) -> _Loaded:
        """The config and what the middleware reads of it, cached until :meth:`reload`."""
        loaded = self._loaded
        if loaded is None:
            config = self.build()
            policy = InboundPolicy.from_config(config)
            echo = config.request_id_header if config.echo_request_id else None
            loaded = self._loaded = _Loaded(
                config,
                policy,
                headers_only=policy.resolver is None and not policy.trusted_networks,
                echo=(echo.lower(), echo) if echo else None,
            )
        return loaded

    @property
    def config(self) -> GatewayConfig:
        """The cached :class:`GatewayConfig`."""
        return self.loaded()[0]

    def reload(self) -> None:
        """Forget the cached config; the next access reads the settings again."""
        self._loaded = None


_conf = _Settings()
