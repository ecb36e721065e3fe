"""The gateway clients: ``GatewayClient`` (sync), ``AsyncGatewayClient``, and the shared ones.

Both build on httpx with the correlation transport, explicit timeouts, no cookie persistence and
no client-level correlation headers. Retries follow :mod:`aigw_middleware.retry`; failures are
raised as the exceptions of :mod:`aigw_middleware.errors`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any

import httpx

from ._version import __version__
from .config import GatewayConfig
from .context import CorrelationContext, current_context, new_request_id
from .errors import (
    ConfigurationError,
    GatewayConnectionError,
    GatewayStatusError,
    GatewayTimeoutError,
    classify,
    is_budget_error,
    parse_error_body,
)
from .retry import decide
from .transport import (
    ATTEMPT_EXTENSION,
    CONTEXT_EXTENSION,
    AsyncCorrelationTransport,
    CorrelationTransport,
)

__all__ = [
    "AsyncChatStream",
    "AsyncGatewayClient",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatStream",
    "Embeddings",
    "GatewayClient",
    "ModelList",
    "SharedClients",
    "configure",
    "current_config",
    "get_async_client",
    "get_client",
    "no_cookie_jar",
    "prefixed_model",
    "proxy_for",
    "register_client_source",
    "timeout_for",
]

#: Response headers where gateways put their own request ID, in the order they are looked up.
GATEWAY_REQUEST_ID_HEADERS = (
    "x-request-id",
    "helicone-id",
    "x-litellm-call-id",
    "x-portkey-request-id",
    "request-id",
)
CONNECT_TIMEOUT = 5.0
Message = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class _Result:
    raw: dict[str, Any]
    request_id: str
    gateway_request_id: str | None


@dataclass(frozen=True, slots=True)
class ChatCompletion(_Result):
    """A chat completion: ``content`` of the first choice, ``model``, ``usage`` and ``raw``."""

    @property
    def content(self) -> str:
        choices = self.raw.get("choices") or [{}]
        return (choices[0].get("message") or {}).get("content") or ""

    @property
    def model(self) -> str | None:
        return self.raw.get("model")

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.raw.get("usage")


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    """One streamed chunk: ``delta`` is the first choice's new text ("" when none)."""

    raw: dict[str, Any]

    @property
    def delta(self) -> str:
        choices = self.raw.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or ""

    @property
    def finish_reason(self) -> str | None:
        choices = self.raw.get("choices") or [{}]
        reason = choices[0].get("finish_reason")
        return None if reason is None else str(reason)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.raw.get("usage")


@dataclass(frozen=True, slots=True)
class Embeddings(_Result):
    """Embeddings: ``vectors`` in input order, ``model``, ``usage`` and ``raw``."""

    @property
    def vectors(self) -> list[list[float]]:
        items = sorted(self.raw.get("data") or [], key=lambda item: item.get("index", 0))
        return [item.get("embedding") or [] for item in items]

    @property
    def model(self) -> str | None:
        return self.raw.get("model")

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.raw.get("usage")


@dataclass(frozen=True, slots=True)
class ModelList(_Result):
    """The gateway's models: ``ids`` and ``raw``."""

    @property
    def ids(self) -> list[str]:
        return [item.get("id", "") for item in self.raw.get("data") or []]


# ---------------------------------------------------------------------------------------------
# One logical call: attempts, retry decisions and errors, without I/O.


class _Call:
    """The retry state of one logical call; the sync and async loops only do the I/O."""

    def __init__(
        self,
        http: httpx.Client | httpx.AsyncClient,
        config: GatewayConfig,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        if config.base_url is None and not url.startswith(("http://", "https://")):
            raise ConfigurationError(
                "AIGW_BASE_URL", None, "is not set: configure the gateway URL before calling it"
            )
        self.http = http
        self.config = config
        self.context = current_context() or CorrelationContext(new_request_id())
        self.attempt = 0
        self._args: dict[str, Any] = {
            "json": json,
            "content": content,
            "params": params,
            "headers": headers,
            "timeout": timeout_for(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        }
        self._method = method
        self._url = url.lstrip("/") if not url.startswith(("http://", "https://")) else url

    def next_request(self) -> httpx.Request:
        self.attempt += 1
        return self.http.build_request(
            self._method,
            self._url,
            extensions={CONTEXT_EXTENSION: self.context, ATTEMPT_EXTENSION: self.attempt},
            **self._args,
        )

    def rejected(self, response: httpx.Response) -> float:
        """An error response (body already read): the delay before retrying, or raise."""
        body = parse_error_body(response.content, response.reason_phrase)
        budget = is_budget_error(response.status_code, body)
        decision = decide(
            status=response.status_code,
            headers=response.headers,
            retries_done=self.attempt - 1,
            max_retries=self.config.max_retries,
            budget=budget,
        )
        if decision.retry:
            return decision.delay
        note = decision.reason if decision.reason.startswith("Retry-After") else ""
        raise classify(response.status_code, body)(
            response.status_code,
            body,
            request_id=self.context.request_id,
            gateway_request_id=gateway_request_id(response),
            retry_after=decision.retry_after,
            attempts=self.attempt,
            note=note,
        )

    def failed(self, exc: httpx.TransportError) -> float:
        """A transport failure: the delay before retrying, or raise."""
        decision = decide(
            status=None,
            headers=None,
            retries_done=self.attempt - 1,
            max_retries=self.config.max_retries,
        )
        if decision.retry:
            return decision.delay
        raise connection_error(exc, self.context, self.attempt) from exc


def connection_error(
    exc: httpx.TransportError, context: CorrelationContext, attempts: int
) -> GatewayConnectionError:
    """The library's exception for an httpx transport failure."""
    kind = (
        GatewayTimeoutError if isinstance(exc, httpx.TimeoutException) else GatewayConnectionError
    )
    target = ""
    try:
        url = exc.request.url
        target = f"{url.host}{f':{url.port}' if url.port else ''}{url.path}"
    except RuntimeError:
        pass
    detail = str(exc) or type(exc).__name__
    return kind(
        f"{type(exc).__name__}: {detail}",
        request_id=context.request_id,
        attempts=attempts,
        target=target,
    )


def gateway_request_id(response: httpx.Response) -> str | None:
    """The gateway's own request ID from a response, if it sent one."""
    for name in GATEWAY_REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return str(value)
    return None


def timeout_for(seconds: float, http: Any = httpx) -> httpx.Timeout:
    """The timeout of one attempt: ``seconds`` to read, write and wait for a connection from the
    pool, at most 5 s to connect. ``http`` is the httpx-compatible package to build it with."""
    timeout: httpx.Timeout = http.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds))
    return timeout


class _RejectAllCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing: no cookie of one call is ever sent on another."""
    return CookieJar(policy=_RejectAllCookies())


def proxy_for(config: GatewayConfig) -> str | None:
    """The explicit proxy, else the environment's proxy for ``base_url`` unless disabled."""
    if config.proxy is not None:
        return config.proxy
    if config.disable_proxy or config.base_url is None:
        return None
    url = httpx.URL(config.base_url)
    if urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _client_options(config: GatewayConfig) -> dict[str, Any]:
    headers = {"User-Agent": f"aigw-middleware/{__version__}", **config.extra_headers}
    if config.api_key is not None:
        headers["Authorization"] = f"Bearer {config.api_key}"
    return {
        "base_url": (config.base_url or "") + "/",
        "headers": headers,
        "timeout": timeout_for(config.timeout),
        "cookies": no_cookie_jar(),
        # Proxies are chosen here, so the environment cannot mount transports that bypass ours.
        "trust_env": False,
        "follow_redirects": False,
    }


# ---------------------------------------------------------------------------------------------
# Payloads and SSE, shared by the sync and async resources.


def prefixed_model(config: GatewayConfig, model: str) -> str:
    """``model`` with ``config.model_prefix`` in front, unless it already names a provider."""
    if config.model_prefix and "/" not in model:
        return f"{config.model_prefix}/{model}"
    return model


def _chat_payload(
    config: GatewayConfig,
    model: str,
    messages: Sequence[Message],
    stream: bool,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": prefixed_model(config, model), "messages": list(messages)}
    payload.update(params)
    if stream:
        payload["stream"] = True
    return payload


def _embeddings_payload(
    config: GatewayConfig, model: str, input: str | Sequence[str], params: Mapping[str, Any]
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": prefixed_model(config, model),
        "input": input if isinstance(input, str) else list(input),
    }
    payload.update(params)
    return payload


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise GatewayStatusError(
            response.status_code,
            parse_error_body(b"", "the gateway's answer is not JSON"),
            gateway_request_id=gateway_request_id(response),
        ) from exc
    return data if isinstance(data, dict) else {"data": data}


class _SSEDecoder:
    """Turns ``data:`` lines into chunks; ``[DONE]`` ends the stream."""

    def __init__(self, response: httpx.Response, context: CorrelationContext) -> None:
        self._response = response
        self._context = context
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> ChatCompletionChunk | None:
        if line.startswith("data:"):
            self._data.append(line[5:].lstrip(" "))
            return None
        if line or not self._data:
            return None  # comments, event/id/retry fields, blank keep-alives
        data = "\n".join(self._data)
        self._data = []
        if data.strip() == "[DONE]":
            self.done = True
            return None
        try:
            event = json.loads(data)
        except ValueError:
            return None
        if isinstance(event, dict) and "error" in event:
            body = parse_error_body(data.encode())
            raise classify(self._response.status_code, body)(
                self._response.status_code,
                body,
                request_id=self._context.request_id,
                gateway_request_id=gateway_request_id(self._response),
                note="(in stream)",
            )
        return ChatCompletionChunk(event) if isinstance(event, dict) else None

    def finish(self) -> ChatCompletionChunk | None:
        return self.feed("") if self._data else None


class ChatStream:
    """A streamed chat completion: iterate for :class:`ChatCompletionChunk`; closes at the end.

    Use it as a context manager (or call :meth:`close`) when you may stop early.
    """

    def __init__(self, response: httpx.Response, context: CorrelationContext) -> None:
        self.response = response
        self.request_id = context.request_id
        self.gateway_request_id = gateway_request_id(response)
        self._decoder = _SSEDecoder(response, context)
        self._context = context

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        try:
            for line in self.response.iter_lines():
                chunk = self._decoder.feed(line)
                if chunk is not None:
                    yield chunk
                if self._decoder.done:
                    return
            last = self._decoder.finish()
            if last is not None:
                yield last
        except httpx.TransportError as exc:
            raise connection_error(exc, self._context, 1) from exc
        finally:
            self.response.close()

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncChatStream:
    """The async :class:`ChatStream`: ``async for chunk in stream``."""

    def __init__(self, response: httpx.Response, context: CorrelationContext) -> None:
        self.response = response
        self.request_id = context.request_id
        self.gateway_request_id = gateway_request_id(response)
        self._decoder = _SSEDecoder(response, context)
        self._context = context

    async def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async for line in self.response.aiter_lines():
                chunk = self._decoder.feed(line)
                if chunk is not None:
                    yield chunk
                if self._decoder.done:
                    return
            last = self._decoder.finish()
            if last is not None:
                yield last
        except httpx.TransportError as exc:
            raise connection_error(exc, self._context, 1) from exc
        finally:
            await self.response.aclose()

    async def close(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# ---------------------------------------------------------------------------------------------
# The sync client


class _Completions:
    def __init__(self, client: GatewayClient) -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> Any:
        """Create a chat completion: a :class:`ChatCompletion`, or a :class:`ChatStream`."""
        config = self._client.config
        payload = _chat_payload(config, model, messages, stream, params)
        response, context = self._client._send(
            "POST",
            "chat/completions",
            json=payload,
            headers=extra_headers,
            timeout=timeout,
            stream=stream,
        )
        if stream:
            return ChatStream(response, context)
        return ChatCompletion(
            _json_body(response), context.request_id, gateway_request_id(response)
        )


class _Chat:
    def __init__(self, client: GatewayClient) -> None:
        self.completions = _Completions(client)


class _Embeddings:
    def __init__(self, client: GatewayClient) -> None:
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
        payload = _embeddings_payload(self._client.config, model, input, params)
        response, context = self._client._send(
            "POST", "embeddings", json=payload, headers=extra_headers, timeout=timeout
        )
        return Embeddings(_json_body(response), context.request_id, gateway_request_id(response))


class _Models:
    def __init__(self, client: GatewayClient) -> None:
        self._client = client

    def list(self, *, timeout: float | None = None) -> ModelList:
        """The models the gateway offers."""
        response, context = self._client._send("GET", "models", timeout=timeout)
        return ModelList(_json_body(response), context.request_id, gateway_request_id(response))


class GatewayClient:
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
        self.config = _effective(config, overrides)
        inner = transport or httpx.HTTPTransport(proxy=proxy_for(self.config))
        self._http = httpx.Client(
            transport=CorrelationTransport(inner, self.config), **_client_options(self.config)
        )
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)
        self.models = _Models(self)

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
        response, _ = self._send(
            method,
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
        )
        return response

    def _send(
        self, method: str, url: str, *, stream: bool = False, **kwargs: Any
    ) -> tuple[httpx.Response, CorrelationContext]:
        call = _Call(self._http, self.config, method, url, **kwargs)
        while True:
            request = call.next_request()
            try:
                response = self._http.send(request, stream=True)
                if response.is_success and stream:
                    return response, call.context
                try:
                    response.read()
                finally:
                    response.close()
                if response.is_success:
                    return response, call.context
                delay = call.rejected(response)
            except httpx.TransportError as exc:
                delay = call.failed(exc)
            time.sleep(delay)

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

    def __repr__(self) -> str:
        return f"GatewayClient(base_url={self.config.base_url!r})"


# ---------------------------------------------------------------------------------------------
# The async client


class _AsyncCompletions:
    def __init__(self, client: AsyncGatewayClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **params: Any,
    ) -> Any:
        """Create a chat completion: a :class:`ChatCompletion`, or an :class:`AsyncChatStream`."""
        config = self._client.config
        payload = _chat_payload(config, model, messages, stream, params)
        response, context = await self._client._send(
            "POST",
            "chat/completions",
            json=payload,
            headers=extra_headers,
            timeout=timeout,
            stream=stream,
        )
        if stream:
            return AsyncChatStream(response, context)
        return ChatCompletion(
            _json_body(response), context.request_id, gateway_request_id(response)
        )


class _AsyncChat:
    def __init__(self, client: AsyncGatewayClient) -> None:
        self.completions = _AsyncCompletions(client)


class _AsyncEmbeddings:
    def __init__(self, client: AsyncGatewayClient) -> None:
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
        payload = _embeddings_payload(self._client.config, model, input, params)
        response, context = await self._client._send(
            "POST", "embeddings", json=payload, headers=extra_headers, timeout=timeout
        )
        return Embeddings(_json_body(response), context.request_id, gateway_request_id(response))


class _AsyncModels:
    def __init__(self, client: AsyncGatewayClient) -> None:
        self._client = client

    async def list(self, *, timeout: float | None = None) -> ModelList:
        """The models the gateway offers."""
        response, context = await self._client._send("GET", "models", timeout=timeout)
        return ModelList(_json_body(response), context.request_id, gateway_request_id(response))


class AsyncGatewayClient:
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
        self.config = _effective(config, overrides)
        inner = transport or httpx.AsyncHTTPTransport(proxy=proxy_for(self.config))
        self._http = httpx.AsyncClient(
            transport=AsyncCorrelationTransport(inner, self.config),
            **_client_options(self.config),
        )
        self.chat = _AsyncChat(self)
        self.embeddings = _AsyncEmbeddings(self)
        self.models = _AsyncModels(self)

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
        response, _ = await self._send(
            method,
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=timeout,
        )
        return response

    async def _send(
        self, method: str, url: str, *, stream: bool = False, **kwargs: Any
    ) -> tuple[httpx.Response, CorrelationContext]:
        call = _Call(self._http, self.config, method, url, **kwargs)
        while True:
            request = call.next_request()
            try:
                response = await self._http.send(request, stream=True)
                if response.is_success and stream:
                    return response, call.context
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                if response.is_success:
                    return response, call.context
                delay = call.rejected(response)
            except httpx.TransportError as exc:
                delay = call.failed(exc)
            await asyncio.sleep(delay)

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

    def __repr__(self) -> str:
        return f"AsyncGatewayClient(base_url={self.config.base_url!r})"


def _effective(config: GatewayConfig | None, overrides: Mapping[str, Any]) -> GatewayConfig:
    if config is None:
        return GatewayConfig.from_env(**overrides)
    return config.replace(**overrides) if overrides else config


# ---------------------------------------------------------------------------------------------
# Shared clients


class SharedClients:
    """One sync client per process and one async client per running event loop, for a config.

    Async clients live in a loop-keyed weak map, so a client is never used on a loop other than
    its own; each is closed when its loop shuts down its async generators (``asyncio.run`` and
    ``asgiref.async_to_sync`` both do).
    """

    def __init__(self, config: GatewayConfig | Callable[[], GatewayConfig]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._sync: GatewayClient | None = None
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AsyncGatewayClient, Any]
        ] = weakref.WeakKeyDictionary()

    @property
    def config(self) -> GatewayConfig:
        """The config, loaded on first use when given as a factory."""
        if callable(self._config):
            with self._lock:
                if callable(self._config):
                    self._config = self._config()
        return self._config

    def client(self) -> GatewayClient:
        """The shared sync client."""
        client = self._sync
        if client is None:
            config = self.config
            with self._lock:
                if self._sync is None:
                    self._sync = GatewayClient(config)
                client = self._sync
        return client

    def async_client(self) -> AsyncGatewayClient:
        """The async client of the running event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "get_async_client() needs a running event loop; call it from async code"
            ) from None
        entry = self._async.get(loop)
        if entry is not None and not entry[0].is_closed:
            return entry[0]
        config = self.config
        client = AsyncGatewayClient(config)
        closer = _close_with_loop(client, lambda: self._forget(loop))
        # Starting the generator registers it with the loop, whose shutdown_asyncgens() then
        # closes the client on the loop that owns its connections.
        started = asyncio.ensure_future(closer.__anext__())
        with self._lock:
            self._async[loop] = (client, (closer, started))
        return client

    def _forget(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._async.pop(loop, None)

    def close(self) -> None:
        """Close the sync client; async clients close with their loops."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()


async def _close_with_loop(
    client: AsyncGatewayClient, forget: Callable[[], None]
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        forget()
        await client.aclose()


_default = SharedClients(GatewayConfig.from_env)
_sources: list[Callable[[], SharedClients | None]] = []


def configure(config: GatewayConfig | Callable[[], GatewayConfig] | None) -> None:
    """Set the process-wide config behind :func:`get_client` (None: back to the environment).

    Framework adapters call this at start-up; the previous shared sync client is closed.
    """
    global _default
    old, _default = _default, SharedClients(config or GatewayConfig.from_env)
    old.close()


def register_client_source(source: Callable[[], SharedClients | None]) -> None:
    """Let an adapter supply the shared clients for the current request (e.g. the Flask app).

    Sources are asked in order; the first that returns clients wins, else the process default.
    """
    if source not in _sources:
        _sources.append(source)


def _shared() -> SharedClients:
    for source in _sources:
        found = source()
        if found is not None:
            return found
    return _default


def current_config() -> GatewayConfig:
    """The config :func:`get_client` would use here and now (the framework's, else the process's)."""
    return _shared().config


def get_client() -> GatewayClient:
    """The shared, thread-safe :class:`GatewayClient` (the framework's config, else the
    environment's)."""
    return _shared().client()


def get_async_client() -> AsyncGatewayClient:
    """The :class:`AsyncGatewayClient` of the running event loop, shared within that loop."""
    return _shared().async_client()
