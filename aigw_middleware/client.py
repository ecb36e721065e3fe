"""The gateway clients: ``GatewayClient`` (sync), ``AsyncGatewayClient``, and the shared ones.

Both build on httpx with the correlation transport, explicit timeouts, no cookie persistence and
no client-level correlation headers (:mod:`aigw_middleware._httpx`). Retries follow
:mod:`aigw_middleware.retry`; failures are raised as the exceptions of
:mod:`aigw_middleware.errors`. The two clients share everything but their I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from . import _shared
from ._attempts import RequestSpec, asend, send
from ._httpx import client_options, http_transport, inner_transport, keeping_no_cookies
from ._resources import (
    AsyncChat,
    AsyncEmbeddingsResource,
    AsyncModels,
    Chat,
    EmbeddingsResource,
    Models,
)
from ._results import ChatCompletion, ChatCompletionChunk, Embeddings, ModelList
from ._shared import configure
from ._streaming import AsyncChatStream, ChatStream
from .config import GatewayConfig
from .context import CorrelationContext
from .errors import _mask_url_credentials
from .transport import AsyncCorrelationTransport, CorrelationTransport

__all__ = [
    "AsyncChatStream",
    "AsyncGatewayClient",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStream",
    "Embeddings",
    "GatewayClient",
    "ModelList",
    "configure",
    "get_async_client",
    "get_client",
]


class _BaseClient:
    """What both clients share: the config (with overrides applied), request specs, repr."""

    def __init__(self, config: GatewayConfig | None, overrides: Mapping[str, Any]) -> None:
        if config is None:
            config = GatewayConfig.from_env(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        """The client's settings, overrides applied."""

    @staticmethod
    def _spec(
        method: str,
        path: str,
        json: Any,
        content: bytes | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> RequestSpec:
        return RequestSpec(method, path, json, content, params, headers, timeout)

    def __repr__(self) -> str:
        base_url = self.config.base_url
        shown = None if base_url is None else _mask_url_credentials(base_url)
        return f"{type(self).__name__}(base_url={shown!r})"


class GatewayClient(_BaseClient):
    """A thread-safe client for an OpenAI-compatible gateway.

    ``GatewayClient(config=None, **overrides)``: without ``config`` the settings come from the
    environment; ``overrides`` are :class:`GatewayConfig` fields. Prefer :func:`get_client`,
    which shares one client per process.
    """

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, overrides)
        inner = transport or http_transport(self.config)
        self._http: httpx.Client = keeping_no_cookies(
            httpx.Client(
                transport=CorrelationTransport(inner, self.config), **client_options(self.config)
            )
        )
        self.chat = Chat(self)
        """``chat.completions.create(model=..., messages=[...], stream=False, ...)``."""
        self.embeddings = EmbeddingsResource(self)
        """``embeddings.create(model=..., input=...)``."""
        self.models = Models(self)
        """``models.list()``."""

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Any call to the gateway (``path`` relative to ``base_url``), with the same retries and
        errors as the typed methods. Returns the read ``httpx.Response``."""
        spec = self._spec(method, path, json, content, params, headers, timeout)
        return self._send(spec)[0]

    def _send(self, spec: RequestSpec) -> tuple[httpx.Response, CorrelationContext, int]:
        return send(self._http, self.config, spec)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncGatewayClient(_BaseClient):
    """The asyncio client; same API as :class:`GatewayClient` with ``await``.

    An instance belongs to one event loop. Prefer :func:`get_async_client`, which keeps one per
    running loop.
    """

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(config, overrides)
        inner = transport or inner_transport(self.config, asynchronous=True)
        self._http: httpx.AsyncClient = keeping_no_cookies(
            httpx.AsyncClient(
                transport=AsyncCorrelationTransport(inner, self.config),
                **client_options(self.config),
            )
        )
        self.chat = AsyncChat(self)
        """``await chat.completions.create(model=..., messages=[...], stream=False, ...)``."""
        self.embeddings = AsyncEmbeddingsResource(self)
        """``await embeddings.create(model=..., input=...)``."""
        self.models = AsyncModels(self)
        """``await models.list()``."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Any call to the gateway; see :meth:`GatewayClient.request`."""
        spec = self._spec(method, path, json, content, params, headers, timeout)
        return (await self._send(spec))[0]

    async def _send(self, spec: RequestSpec) -> tuple[httpx.Response, CorrelationContext, int]:
        return await asend(self._http, self.config, spec)

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` ran."""
        return self._http.is_closed

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def get_client() -> GatewayClient:
    """The shared, thread-safe :class:`GatewayClient` (the framework's config, else the
    environment's)."""
    return _shared.active().client()


def get_async_client() -> AsyncGatewayClient:
    """The :class:`AsyncGatewayClient` of the running event loop, shared within that loop."""
    return _shared.active().async_client()
