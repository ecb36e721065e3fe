"""Streamed chat completions as a caller reads them: server-sent events into chunks.

Each test streams an exact body through ``httpx.MockTransport`` and asserts the chunks (or the
error) that the sync and the async stream give.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    ChatCompletionChunk,
    GatewayClient,
    GatewayConfig,
    GatewayConnectionError,
)
from aigw_middleware._streaming import SSEDecoder
from aigw_middleware.errors import MalformedResponseError

BASE = "http://gw.test/v1"
HI = [{"role": "user", "content": "hi"}]


def event(content: str | None = None, finish_reason: str | None = None, **more: Any) -> str:
    delta = {} if content is None else {"content": content}
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **more}
    return json.dumps(chunk, ensure_ascii=False)


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives in these pieces, to the sync and the async client alike."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def handler(body: bytes | list[bytes]) -> httpx.MockTransport:
    """A gateway that streams ``body``: as one piece, or as the pieces of a list."""

    def answer(request: httpx.Request) -> httpx.Response:
        pieces = Pieces(body if isinstance(body, list) else [body])
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=pieces)

    return httpx.MockTransport(answer)


def config() -> GatewayConfig:
    return GatewayConfig.from_env({}, base_url=BASE, api_key="sk-test")


def read_sync(body: bytes | list[bytes]) -> list[ChatCompletionChunk]:
    with GatewayClient(config(), transport=handler(body)) as client:
        return list(client.chat.completions.create(model="m", messages=HI, stream=True))


async def read_async(body: bytes | list[bytes]) -> list[ChatCompletionChunk]:
    async with AsyncGatewayClient(config(), transport=handler(body)) as client:
        stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
        return [chunk async for chunk in stream]


async def read_both(body: bytes | list[bytes]) -> list[ChatCompletionChunk]:
    """The chunks of ``body``, after checking that both streams read it alike."""
    chunks = read_sync(body)
    assert await read_async(body) == chunks
    return chunks


async def test_chunks_carry_the_first_choice_delta_finish_reason_and_usage() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    body = (
        f"data: {event('Hel')}\n\n"
        f"data: {event('lo', 'stop')}\n\n"
        f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
        "data: [DONE]\n\n"
    ).encode()
    chunks = await read_both(body)
    assert [(c.delta, c.finish_reason, c.usage) for c in chunks] == [
        ("Hel", None, None),
        ("lo", "stop", None),
        ("", None, usage),
    ]
    assert chunks[0].raw == json.loads(event("Hel"))


async def test_sse_fields_comments_multi_line_data_and_padding_are_read_as_the_spec_says() -> None:
    body = (
        ": a comment\n\n"
        "event: message\nid: 7\nretry: 1000\n"
        f"data: {event('one')}\n\n"
        "\n\n"  # blank keep-alives
        'data: {"choices": [{"delta":\n'  # one event over two data lines
        'data: {"content": "two"}}]}\n\n'
        f"data:{event('three')}\n\n"  # no space after the colon
        f"data:    {event('four')}   \n\n"  # JSON padded with white space
        "data:  [DONE] \n\n"
        f"data: {event('after done')}\n\n"
    ).encode()
    chunks = await read_both(body)
    assert [c.delta for c in chunks] == ["one", "two", "three", "four"]


async def test_lines_end_at_cr_lf_or_crlf_and_only_there() -> None:
    # Line and paragraph separators and NEL are text inside the JSON, not line ends.
    separators = "a\u2028b\u2029c\x85d"
    body = (
        f"data: {event('cr')}\r\r"
        f"data: {event('crlf')}\r\n\r\n"
        f"data: {event('lf')}\n\n"
        f"data: {event(separators)}\n\n"
        "data: [DONE]\r\n\r\n"
    ).encode()
    chunks = await read_both(body)
    assert [c.delta for c in chunks] == ["cr", "crlf", "lf", separators]


async def test_events_split_anywhere_across_network_pieces_read_the_same() -> None:
    body = (
        f"data: {event('héllo ✓')}\r\n\r\n"
        f"data: {event('two')}\r\r"
        f"data: {event('three', 'stop')}\n\n"
    ).encode()
    expected = ["héllo ✓", "two", "three"]
    for cut in range(1, len(body)):  # every place, inside a CRLF and a UTF-8 character too
        pieces = [body[:cut], body[cut:]]
        assert [c.delta for c in read_sync(pieces)] == expected, cut
    byte_by_byte = [body[i : i + 1] for i in range(len(body))]
    assert [c.delta for c in await read_both(byte_by_byte)] == expected


def test_the_decoder_keeps_a_line_across_pieces_and_stops_at_done() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {") == []
    assert decoder.feed(b'"a": 1') == []
    assert decoder.feed(b"}\r") == []
    assert decoder.feed(b"\n\r\n") == ['{"a": 1}']
    assert decoder.feed(b"data: [DONE]\n\ndata: {}\n\n") == []
    assert decoder.done
    assert decoder.finish() == []


async def test_invalid_utf8_in_an_event_is_replaced_not_fatal() -> None:
    body = b'data: {"choices": [{"delta": {"content": "a\xff"}, "finish_reason": "stop"}]}\n\n'
    assert [c.delta for c in await read_both(body)] == ["a\ufffd"]


async def test_a_last_event_without_a_blank_line_after_it_still_counts() -> None:
    assert [c.delta for c in await read_both(f"data: {event('end', 'stop')}".encode())] == ["end"]
    body = f"data: {event('a')}\n\ndata: [DONE]".encode()
    assert [c.delta for c in await read_both(body)] == ["a"]


async def test_a_finish_reason_on_any_choice_completes_the_stream() -> None:
    second_finished = {
        "choices": [
            {"index": 0, "delta": {"content": "a"}, "finish_reason": None},
            {"index": 1, "delta": {}, "finish_reason": "length"},
        ]
    }
    chunks = await read_both(f"data: {json.dumps(second_finished)}\n\n".encode())
    assert [(c.delta, c.finish_reason) for c in chunks] == [("a", None)]


async def test_a_stream_without_a_finish_reason_or_done_is_cut_short() -> None:
    body = f"data: {event('a', '')}\n\n".encode()  # an empty finish reason is none
    with pytest.raises(GatewayConnectionError, match="incomplete"):
        read_sync(body)
    with pytest.raises(GatewayConnectionError, match="incomplete"):
        await read_async(body)


WRONG_SHAPES = {
    "choices is not a list": {"choices": {"0": {}}},
    "choices[0] is not an object": {"choices": ["x"]},
    "choices[0].delta is not an object": {"choices": [{"delta": "x"}]},
    "choices[0].delta.content is not a string": {"choices": [{"delta": {"content": 1}}]},
    "choices[0].finish_reason is not a string": {"choices": [{"delta": {}, "finish_reason": 1}]},
    "usage is not an object": {"choices": [], "usage": [1]},
}


@pytest.mark.parametrize("problem", WRONG_SHAPES.keys())
async def test_a_chunk_of_the_wrong_shape_names_the_field_and_never_quotes_it(problem: str) -> None:
    body = f"data: {json.dumps(WRONG_SHAPES[problem])}\n\ndata: [DONE]\n\n".encode()
    with pytest.raises(MalformedResponseError) as caught:
        read_sync(body)
    with pytest.raises(MalformedResponseError) as acaught:
        await read_async(body)
    for error in (caught.value, acaught.value):
        assert f"an event in the stream {problem}" in str(error)


@pytest.mark.parametrize(
    "data", ['{"choices": []} trailing', "", "{", "null"], ids=["trailing", "empty", "cut", "null"]
)
def test_an_event_that_is_not_one_json_object_is_malformed(data: str) -> None:
    with pytest.raises(MalformedResponseError):
        read_sync(f"data: {data}\n\ndata: [DONE]\n\n".encode())


def test_a_chunk_is_immutable_compares_by_its_event_and_can_be_built_from_one() -> None:
    raw = json.loads(event("hi", "stop"))
    chunk = ChatCompletionChunk(raw)
    assert (chunk.delta, chunk.finish_reason, chunk.usage, chunk.raw) == ("hi", "stop", None, raw)
    assert chunk == ChatCompletionChunk(json.loads(event("hi", "stop")))
    assert chunk != ChatCompletionChunk(json.loads(event("ho", "stop")))
    assert repr(chunk) == f"ChatCompletionChunk(raw={raw!r})"
    assert isinstance(chunk, ChatCompletionChunk)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chunk.delta = "changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del chunk.raw
    with pytest.raises(TypeError):
        hash(chunk)
