"""Streamed chat completions: server-sent events read into chunks, by sync and async streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from . import _otel
from ._attempts import connection_error
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
from .transport import _target_of

#: ``raw_decode`` skips the two whitespace scans of ``json.loads``; an event it does not read to
#: its end goes through :func:`parse_json`, which accepts or rejects it as ``json.loads`` does.
_raw_decode = json.JSONDecoder().raw_decode


class SSEDecoder:
    """Server-sent events from the bytes of a body: :meth:`feed` returns the data of the events
    each piece completes.

    Lines end at CR, LF or CRLF (also when a piece ends between CR and LF); an event is its
    ``data:`` lines up to a blank line, and other fields, comments and blank keep-alives are
    skipped. The data ``[DONE]`` ends the stream: ``done``, and nothing after it is read.
    Events are UTF-8, as the format requires, decoded once complete. No I/O: the streams feed
    it the body's pieces as they arrive.
    """

    def __init__(self) -> None:
        self._data: list[bytes] = []  # the data lines of the event under way
        self._partial: list[bytes] = []  # the start of a line that goes on in the next piece
        self._after_cr = False  # the last piece ended with CR: a LF first in this one goes with it
        self.done = False

    def feed(self, piece: bytes) -> list[str]:
        """The data of each event that ``piece`` completes, in order."""
        if self._after_cr:
            self._after_cr = False
            if piece.startswith(b"\n"):
                piece = piece[1:]
        if not piece:
            return []
        lines = piece.splitlines()  # for bytes: at CR, LF and CRLF only
        last = piece[-1]
        if last != 10 and last != 13:  # the last line goes on in the next piece
            if len(lines) == 1:
                self._partial.append(lines[0])
                return []
            tail = lines.pop()
        else:
            tail = None
            self._after_cr = last == 13
        if self._partial:
            lines[0] = b"".join(self._partial) + lines[0]
            self._partial = []
        if tail is not None:
            self._partial.append(tail)
        events = []
        data = self._data
        for line in lines:
            if line:
                if line[:5] == b"data:":
                    data.append(line[5:].lstrip(b" "))
            elif data:
                event = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if event.strip() == b"[DONE]":
                    self.done = True
                    break
                try:
                    events.append(event.decode())
                except UnicodeDecodeError:
                    events.append(event.decode("utf-8", "replace"))
        return events

    def finish(self) -> list[str]:
        """At the end of the body: the event its last lines make, if any (the format wants a
        blank line after each event; a body cut after its last data line still counts)."""
        return [] if self.done else self.feed(b"\n\n")


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
        self._decoder = SSEDecoder()
        self._finished = False  # a choice had its finish_reason

    def _chunk(self, data: str) -> ChatCompletionChunk:
        """The chunk in one event's data; an error event raises as the error it reports, and
        an event that is not a chunk as a malformed answer: no chunk is skipped unseen."""
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
        if self._decoder.done or self._finished:
            return
        error = GatewayConnectionError(
            "the stream ended before [DONE] or a finish_reason: the answer is incomplete",
            request_id=self.request_id,
            attempts=self._attempts,
            target=_target_of(self.response.request.url),
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
        decoder = self._decoder
        try:
            for piece in self.response.iter_bytes():
                for data in decoder.feed(piece):
                    yield self._chunk(data)
                if decoder.done:
                    break
            for data in decoder.finish():
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
        decoder = self._decoder
        try:
            async for piece in self.response.aiter_bytes():
                for data in decoder.feed(piece):
                    yield self._chunk(data)
                if decoder.done:
                    break
            for data in decoder.finish():
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
