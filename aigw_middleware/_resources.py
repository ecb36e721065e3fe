"""The typed API of the clients: ``chat.completions``, ``embeddings``, ``models``.

Each ``create`` builds a :class:`~aigw_middleware._attempts.RequestSpec`, sends it through its
client, and builds the result; the spec and result builders are shared by sync and async, so the
two resource families differ only in ``await``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, overload

import httpx

from ._attempts import RequestSpec
from ._results import ChatCompletion, Embeddings, ModelList
from ._streaming import AsyncChatStream, ChatStream
from .config import GatewayConfig
from .context import CorrelationContext

#: An OpenAI-format chat message, e.g. ``{"role": "user", "content": "hi"}``.
Message = Mapping[str, Any]
#: What a client's ``_send`` returns: the response, the context it was sent with, the attempts.
_Sent = tuple[httpx.Response, CorrelationContext, int]


class _Client(Protocol):
    config: GatewayConfig

    def _send(self, spec: RequestSpec) -> _Sent: ...


class _AsyncClient(Protocol):
    config: GatewayConfig

    async def _send(self, spec: RequestSpec) -> _Sent: ...


def chat_spec(
    config: GatewayConfig,
    model: str,
    messages: Sequence[Message],
    stream: bool,
    extra_headers: Mapping[str, str] | None,
    timeout: float | None,
    params: Mapping[str, Any],
) -> RequestSpec:
    payload: dict[str, Any] = {"model": config.prefixed_model(model), "messages": list(messages)}
    payload.update(params)
    if stream:
        payload["stream"] = True
    return RequestSpec(
        "POST",
        "chat/completions",
        json=payload,
        headers=extra_headers,
        timeout=timeout,
        stream=stream,
    )


def embeddings_spec(
    config: GatewayConfig,
    model: str,
    input: str | Sequence[str],
    extra_headers: Mapping[str, str] | None,
    timeout: float | None,
    params: Mapping[str, Any],
) -> RequestSpec:
    payload: dict[str, Any] = {
        "model": config.prefixed_model(model),
        "input": input if isinstance(input, str) else list(input),
    }
    payload.update(params)
    return RequestSpec("POST", "embeddings", json=payload, headers=extra_headers, timeout=timeout)


def models_spec(timeout: float | None) -> RequestSpec:
    return RequestSpec("GET", "models", timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Sync


class Completions:
    """``client.chat.completions``."""

    def __init__(self, client: _Client) -> None:
        self._client = client

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: Literal[True],
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatStream: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion | ChatStream: ...

    def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion | ChatStream:
        """Create a chat completion: a :class:`ChatCompletion`, or a :class:`ChatStream`."""
        config = self._client.config
        spec = chat_spec(config, model, messages, stream, extra_headers, timeout, params)
        sent = self._client._send(spec)
        if stream:
            return ChatStream(*sent)
        return ChatCompletion.of(*sent)


class Chat:
    """``client.chat``."""

    def __init__(self, client: _Client) -> None:
        self.completions = Completions(client)


class EmbeddingsResource:
    """``client.embeddings``."""

    def __init__(self, client: _Client) -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        input: str | Sequence[str],
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> Embeddings:
        """Create embeddings for ``input``."""
        spec = embeddings_spec(self._client.config, model, input, extra_headers, timeout, params)
        return Embeddings.of(*self._client._send(spec))


class Models:
    """``client.models``."""

    def __init__(self, client: _Client) -> None:
        self._client = client

    def list(self, *, timeout: float | None = None) -> ModelList:
        """The models the gateway offers."""
        return ModelList.of(*self._client._send(models_spec(timeout)))


# ---------------------------------------------------------------------------------------------
# Async


class AsyncCompletions:
    """``client.chat.completions`` of the async client."""

    def __init__(self, client: _AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: Literal[False] = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: Literal[True],
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> AsyncChatStream: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion | AsyncChatStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> ChatCompletion | AsyncChatStream:
        """Create a chat completion: a :class:`ChatCompletion`, or an :class:`AsyncChatStream`."""
        config = self._client.config
        spec = chat_spec(config, model, messages, stream, extra_headers, timeout, params)
        sent = await self._client._send(spec)
        if stream:
            return AsyncChatStream(*sent)
        return ChatCompletion.of(*sent)


class AsyncChat:
    """``client.chat`` of the async client."""

    def __init__(self, client: _AsyncClient) -> None:
        self.completions = AsyncCompletions(client)


class AsyncEmbeddingsResource:
    """``client.embeddings`` of the async client."""

    def __init__(self, client: _AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str,
        input: str | Sequence[str],
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> Embeddings:
        """Create embeddings for ``input``."""
        spec = embeddings_spec(self._client.config, model, input, extra_headers, timeout, params)
        return Embeddings.of(*await self._client._send(spec))


class AsyncModels:
    """``client.models`` of the async client."""

    def __init__(self, client: _AsyncClient) -> None:
        self._client = client

    async def list(self, *, timeout: float | None = None) -> ModelList:
        """The models the gateway offers."""
        return ModelList.of(*await self._client._send(models_spec(timeout)))
