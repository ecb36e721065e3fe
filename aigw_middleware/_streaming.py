"""Streamed chat completions: one SSE decoder, and the sync and async streams built on it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

from . import _otel
from ._attempts import connection_error, target_of
from ._results import (
    ChatCompletionChunk,
    ShapeError,
    checked,
    gateway_request_id,
    malformed,
    parse_json,
    provider_request_id,
)
from .context import CorrelationContext
from .errors import GatewayConnectionError, _classify, _parse_error_body

_DONE = "[DONE]"


class SSEDecoder:
    """Server-sent events from lines: :meth:`feed` returns an event's data once it is complete.

    Only ``data:`` fields count (comments, ``event``, ``id`` and ``retry`` are skipped); the
    data ``[DONE]`` ends the stream. No I/O: the streams feed it lines.
    """

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> str | None:
        """The data of the event that ``line`` completes, or None."""
        if line.startswith("data:"):
            self._data.append(line[5:].lstrip(" "))
            return None
        if line or not self._data:
            return None  # comments, event/id/retry fields, blank keep-alives
        data = "\n".join(self._data)
        self._data = []
        if data.strip() == _DONE:
            self.done = True
            return None
        return data

    def finish(self) -> str | None:
        """The data of an event the stream ended without a blank line after, if any."""
        return self.feed("") if self._data else None


def iter_events(lines: Iterable[str], decoder: SSEDecoder | None = None) -> Iterator[str]:
    """The data of each event in ``lines``, until ``[DONE]`` or the end; ``decoder.done``
    then tells which of the two it was."""
    decoder = decoder or SSEDecoder()
    for line in lines:
        data = decoder.feed(line)
        if data is not None:
            yield data
        if decoder.done:
            return
    last = decoder.finish()
    if last is not None:
        yield last


async def aiter_events(
    lines: AsyncIterable[str], decoder: SSEDecoder | None = None
) -> AsyncIterator[str]:
    """The async :func:`iter_events`."""
    decoder = decoder or SSEDecoder()
    async for line in lines:
        data = decoder.feed(line)
        if data is not None:
            yield data
        if decoder.done:
            return
    last = decoder.finish()
    if last is not None:
        yield last


def _has_finish_reason(event: dict[str, Any]) -> bool:
    choices = event.get("choices")
    return isinstance(choices, list) and any(
        isinstance(choice, dict) and choice.get("finish_reason") for choice in choices
    )


class _Stream:
    def __init__(
        self, response: httpx.Response, context: CorrelationContext, attempts: int = 1
    ) -> None:
        self.response = response
        """The streamed ``httpx.Response``, open until the stream ends or is closed."""
        self.request_id = context.request_id
        """Our request ID, as it went on the wire in ``X-AI-Request-Id``."""
        self.gateway_request_id = gateway_request_id(response)
        """The gateway's own ID for the call, if it sent one."""
        self.provider_request_id = provider_request_id(response)
        """The provider's request ID as the gateway passed it on, if it did."""
        self._context = context
        self._attempts = attempts
        self._span = _otel.stream_span(response)
        self._decoder = SSEDecoder()
        self._finished = False  # a choice had its finish_reason

    def _chunk(self, data: str) -> ChatCompletionChunk:
        """The chunk in one event's data; an error event raises as the error it reports, and
        an event that is not a chunk as a malformed answer: no chunk is skipped unseen."""
        try:
            event = parse_json(data)
            if not isinstance(event, dict):
                raise ShapeError("is not an object")
            if self._span is not None:
                _otel.record_body(self._span, event)
            if "error" not in event:
                chunk = checked(ChatCompletionChunk(event), ChatCompletionChunk._FIELDS)
                self._finished = self._finished or _has_finish_reason(event)
                return chunk
        except ShapeError as exc:
            error = malformed(
                self.response, self._context, self._attempts, f"an event in the stream {exc}"
            )
            _otel.failed(self._span, error)
            raise error from None
        body = _parse_error_body(data.encode())
        status_error = _classify(self.response.status_code, body)(
            self.response.status_code,
            body,
            request_id=self.request_id,
            gateway_request_id=self.gateway_request_id,
            provider_request_id=self.provider_request_id,
            attempts=self._attempts,
            note="(in stream)",
        )
        _otel.failed(self._span, status_error)
        raise status_error

    def _check_complete(self) -> None:
        """A stream that ended with neither ``[DONE]`` nor a finish reason was cut short: a
        gateway that lost its upstream may end its own stream cleanly (the OpenAI SDK then
        stops silently); here it is a :class:`GatewayConnectionError`, as a broken connection
        is, never a short answer taken as whole."""
        if self._decoder.done or self._finished:
            return
        error = GatewayConnectionError(
            "the stream ended before [DONE] or a finish_reason: the answer is incomplete",
            request_id=self.request_id,
            attempts=self._attempts,
            target=target_of(self.response.request.url),
        )
        _otel.failed(self._span, error)
        raise error

    def _failed(self, exc: httpx.TransportError | httpx.DecodingError) -> Exception:
        error: Exception
        if isinstance(exc, httpx.DecodingError):
            error = malformed(
                self.response, self._context, self._attempts, "the stream does not decode"
            )
        else:
            error = connection_error(exc, self._context, self._attempts)
        _otel.failed(self._span, error)
        return error


class ChatStream(_Stream):
    """A streamed chat completion: iterate for :class:`ChatCompletionChunk`; closes at the end.

    Use it as a context manager (or call :meth:`close`) when you may stop early.
    """

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        try:
            for data in iter_events(self.response.iter_lines(), self._decoder):
                yield self._chunk(data)
            self._check_complete()
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise self._failed(exc) from exc
        finally:
            self.response.close()
            _otel.finish(self._span)

    def close(self) -> None:
        """Stop reading and release the connection (leaving ``with`` does it too)."""
        self.response.close()
        _otel.finish(self._span)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncChatStream(_Stream):
    """The async :class:`ChatStream`: ``async for chunk in stream``."""

    async def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async for data in aiter_events(self.response.aiter_lines(), self._decoder):
                yield self._chunk(data)
            self._check_complete()
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise self._failed(exc) from exc
        finally:
            await self.response.aclose()
            _otel.finish(self._span)

    async def close(self) -> None:
        """Stop reading and release the connection (leaving ``async with`` does it too)."""
        await self.response.aclose()
        _otel.finish(self._span)

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
