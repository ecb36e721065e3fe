"""Streamed chat completions: server-sent events read into chunks, by sync and async streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from . import _otel
from ._attempts import connection_error, target_of
from ._results import (
    ChatCompletionChunk,
    ShapeError,
    chunk_of,
    malformed,
    parse_json,
    request_ids,
)
from .context import CorrelationContext
from .errors import GatewayConnectionError, _classify, _parse_error_body

_DONE = "[DONE]"
#: ``raw_decode`` skips the two whitespace scans of ``json.loads``; an event it does not read to
#: its end goes through :func:`parse_json`, which accepts or rejects it as ``json.loads`` does.
_raw_decode = json.JSONDecoder().raw_decode


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
        gateway_id, provider_id = request_ids(response)
        self.gateway_request_id = gateway_id
        """The gateway's own ID for the call, if it sent one."""
        self.provider_request_id = provider_id
        """The provider's request ID as the gateway passed it on, if it did."""
        self._context = context
        self._attempts = attempts
        self._span = _otel.stream_span(response)
        self._done = False  # the stream sent [DONE]
        self._finished = False  # a choice had its finish_reason

    def _event(self, fields: list[str]) -> ChatCompletionChunk | None:
        """The chunk of one event (its ``data:`` lines), or None at ``[DONE]``, which ends the
        stream. An error event raises as the error it reports, and an event that is not a
        chunk as a malformed answer: no chunk is skipped unseen."""
        if len(fields) == 1:
            data = fields[0][5:].lstrip(" ")
        else:
            data = "\n".join(field[5:].lstrip(" ") for field in fields)
        if data.strip() == _DONE:
            self._done = True
            return None
        try:
            try:
                event, end = _raw_decode(data)
            except (ValueError, RecursionError):
                end = -1
            if end != len(data):
                event = parse_json(data)
            if not isinstance(event, dict):
                raise ShapeError("is not an object")
            if self._span is not None:
                _otel.record_body(self._span, event)
            if "error" not in event:
                chunk = chunk_of(event)
                if not self._finished and (
                    chunk.finish_reason
                    or (len(event.get("choices") or ()) > 1 and _has_finish_reason(event))
                ):
                    self._finished = True
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
        if self._done or self._finished:
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
        # Server-sent events: an event is its "data:" lines up to a blank line; other fields,
        # comments and blank keep-alives are skipped.
        fields: list[str] = []
        try:
            for line in self.response.iter_lines():
                if line:
                    if line.startswith("data:"):
                        fields.append(line)
                elif fields:
                    chunk = self._event(fields)
                    if chunk is None:
                        break
                    fields.clear()
                    yield chunk
            else:
                if fields and (chunk := self._event(fields)) is not None:
                    yield chunk
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
        fields: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line:
                    if line.startswith("data:"):
                        fields.append(line)
                elif fields:
                    chunk = self._event(fields)
                    if chunk is None:
                        break
                    fields.clear()
                    yield chunk
            else:
                if fields and (chunk := self._event(fields)) is not None:
                    yield chunk
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
