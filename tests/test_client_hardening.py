"""GatewayClient / AsyncGatewayClient under hostile answers, faults, forks and foreign URLs.

Each test states what a caller observes: the exception type, its request ID and attempts, the
headers each host received. Most run against ``httpx.MockTransport`` handlers, so that the
gateway's misbehaviour is exact; the rest against the FakeGateway.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    ConfigurationError,
    GatewayClient,
    GatewayConfig,
    GatewayConnectionError,
    GatewayError,
    GatewayTimeoutError,
    UpstreamError,
    _attempts,
    async_httpx_client,
    bind_context,
    get_async_client,
    get_client,
    httpx_client,
)
from aigw_middleware.context import CorrelationContext, _reset_context, _set_context
from aigw_middleware.errors import InvalidRequestError, MalformedResponseError
from aigw_middleware.testing import FakeGateway

BASE = "http://gw.test/v1"
HI = [{"role": "user", "content": "hi"}]
Handler = Callable[[httpx.Request], httpx.Response]


def sync_client(handler: Handler, **overrides: Any) -> GatewayClient:
    overrides.setdefault("api_key", "sk-secret")
    config = GatewayConfig.from_env({}, base_url=BASE, **overrides)
    return GatewayClient(config, transport=httpx.MockTransport(handler))


def async_client(handler: Handler, **overrides: Any) -> AsyncGatewayClient:
    overrides.setdefault("api_key", "sk-secret")
    config = GatewayConfig.from_env({}, base_url=BASE, **overrides)
    return AsyncGatewayClient(config, transport=httpx.MockTransport(handler))


def completion(content: str = "hello") -> dict[str, Any]:
    return {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


class Recorder:
    """A MockTransport handler: answers in turn, records every request it received."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sent(self, name: str) -> list[str | None]:
        return [request.headers.get(name) for request in self.requests]


def read_chat(client: GatewayClient) -> tuple[str, str | None, Any]:
    result = client.chat.completions.create(model="m", messages=HI)
    return (result.content, result.model, result.usage)


async def aread_chat(client: AsyncGatewayClient) -> tuple[str, str | None, Any]:
    result = await client.chat.completions.create(model="m", messages=HI)
    return (result.content, result.model, result.usage)


def read_stream(client: GatewayClient) -> list[str]:
    return [
        chunk.delta for chunk in client.chat.completions.create(model="m", messages=HI, stream=True)
    ]


async def aread_stream(client: AsyncGatewayClient) -> list[str]:
    stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
    return [chunk.delta async for chunk in stream]


def answer(status: int = 200, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", {"retry-after-ms": "1"})
    return httpx.Response(status, **kwargs)


# 8: the request ID reported is the one that went on the wire -------------------------------


@pytest.fixture
def invalid_context() -> Iterator[None]:
    token = _set_context(CorrelationContext("bad id\r\nx", tenant="acme"))
    yield
    _reset_context(token)


@pytest.mark.usefixtures("invalid_context")
def test_a_result_reports_the_request_id_sent_not_an_invalid_bound_one() -> None:
    gateway = Recorder(answer(json=completion()))
    with sync_client(gateway) as client:
        result = client.chat.completions.create(model="m", messages=HI)
    assert result.request_id == gateway.sent("x-ai-request-id")[0]
    assert result.request_id != "bad id\r\nx"


@pytest.mark.usefixtures("invalid_context")
def test_an_error_reports_the_request_id_sent_not_an_invalid_bound_one() -> None:
    gateway = Recorder(answer(503, json={"error": "down"}))
    with sync_client(gateway, max_retries=1) as client, pytest.raises(UpstreamError) as caught:
        client.models.list()
    sent = gateway.sent("x-ai-request-id")
    assert sent[0] == sent[1] == caught.value.request_id


@pytest.mark.usefixtures("invalid_context")
async def test_async_results_and_streams_report_the_request_id_sent() -> None:
    sse = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: [DONE]\n\n'
    gateway = Recorder(answer(json=completion()), answer(content=sse))
    async with async_client(gateway) as client:
        result = await client.chat.completions.create(model="m", messages=HI)
        stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
        assert [chunk.delta async for chunk in stream] == ["a"]
    assert [result.request_id, stream.request_id] == gateway.sent("x-ai-request-id")


# 10: retry only what is safe ----------------------------------------------------------------


def test_a_post_carries_one_idempotency_key_repeated_on_every_retry() -> None:
    gateway = Recorder(
        httpx.ReadError("reset after the request went out"),
        answer(502),
        answer(json=completion()),
    )
    with sync_client(gateway, max_retries=2) as client:
        client.chat.completions.create(model="m", messages=HI)
        client.chat.completions.create(model="m", messages=HI)
    keys = gateway.sent("idempotency-key")
    assert keys[0] is not None
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] is not None
    assert keys[3] != keys[0]


def test_a_get_carries_no_idempotency_key_and_a_callers_key_is_kept() -> None:
    gateway = Recorder(answer(json={"data": []}))
    with sync_client(gateway) as client:
        client.models.list()
        client.request("POST", "/things", json={}, headers={"Idempotency-Key": "mine"})
    assert gateway.sent("idempotency-key") == [None, "mine"]


@pytest.mark.parametrize(
    "error",
    [httpx.ReadError("reset"), httpx.RemoteProtocolError("peer closed"), httpx.WriteError("x")],
    ids=type,
)
def test_an_error_after_sending_is_not_retried_without_an_idempotency_key(
    error: Exception,
) -> None:
    gateway = Recorder(error, answer(json={}))
    with (
        sync_client(gateway, max_retries=2) as client,
        pytest.raises(GatewayConnectionError) as caught,
    ):
        client.request("POST", "/things", json={}, headers={"Idempotency-Key": ""})
    assert caught.value.attempts == 1
    assert len(gateway.requests) == 1
    assert gateway.sent("idempotency-key") == [None]


def test_an_error_before_sending_is_retried_without_an_idempotency_key() -> None:
    gateway = Recorder(httpx.ConnectError("refused"), answer(json={"ok": True}))
    with sync_client(gateway, max_retries=2) as client:
        response = client.request("POST", "/things", json={}, headers={"Idempotency-Key": ""})
    assert response.json() == {"ok": True}
    assert len(gateway.requests) == 2


async def test_async_an_error_after_sending_is_retried_only_with_an_idempotency_key() -> None:
    gateway = Recorder(httpx.ReadError("reset"), answer(json={}), httpx.ReadError("reset"))
    async with async_client(gateway, max_retries=2) as client:
        await client.request("POST", "/a", json={})
        with pytest.raises(GatewayConnectionError) as caught:
            await client.request("POST", "/b", json={}, headers={"Idempotency-Key": ""})
    assert caught.value.attempts == 1
    assert [r.url.path for r in gateway.requests] == ["/v1/a", "/v1/a", "/v1/b"]


@pytest.mark.parametrize("bad", ["a\r\nInjected: 1", "a\nb", "nul\0"])
def test_a_crlf_in_a_custom_header_is_an_invalid_request_at_once(bad: str) -> None:
    gateway = Recorder(answer(json=completion()))
    with (
        sync_client(gateway, max_retries=2) as client,
        bind_context(request_id="req-crlf"),
        pytest.raises(InvalidRequestError) as caught,
    ):
        client.chat.completions.create(model="m", messages=HI, extra_headers={"X-Note": bad})
    assert isinstance(caught.value, ValueError)
    assert (caught.value.request_id, caught.value.attempts) == ("req-crlf", 1)
    assert "X-Note" in str(caught.value)
    assert bad not in str(caught.value)
    assert gateway.requests == []


def test_a_local_protocol_error_from_the_http_stack_is_not_retried() -> None:
    gateway = Recorder(httpx.LocalProtocolError("Illegal header value"))
    with sync_client(gateway, max_retries=2) as client, pytest.raises(InvalidRequestError):
        client.models.list()
    assert len(gateway.requests) == 1


async def test_async_a_crlf_in_a_custom_header_is_an_invalid_request_at_once() -> None:
    gateway = Recorder(answer(json={}))
    async with async_client(gateway) as client:
        with pytest.raises(InvalidRequestError):
            await client.request("GET", "/x", headers={"X-Bad": "a\r\nb"})
    assert gateway.requests == []


# 11: every failure of a call is a GatewayError with our request ID and the attempts ----------


def nested(depth: int) -> bytes:
    return b'{"error": ' + b"[" * depth + b"]" * depth + b"}"


def gzipped_garbage() -> httpx.Response:
    return httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
    )


HOSTILE_ANSWERS: dict[str, Callable[[], httpx.Response]] = {
    "deeply nested error body": lambda: answer(400, content=nested(100_000)),
    "deeply nested 200 body": lambda: answer(200, content=nested(100_000)),
    "corrupt gzip 200 body": gzipped_garbage,
    "corrupt gzip error body": lambda: httpx.Response(
        400, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"\x1f\x8bnope")
    ),
    "non-JSON 200 body": lambda: answer(content=b"<html>proxy login</html>"),
    "choices is a string": lambda: answer(json={"choices": "nope"}),
    "a choice is a number": lambda: answer(json={"choices": [7]}),
    "message is a list": lambda: answer(json={"choices": [{"message": ["x"]}]}),
    "content is a number": lambda: answer(json={"choices": [{"message": {"content": 5}}]}),
    "usage is a string": lambda: answer(json={**completion(), "usage": "lots"}),
    "model is an object": lambda: answer(json={**completion(), "model": {}}),
}


@pytest.mark.parametrize("make", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_a_hostile_answer_is_a_gateway_error_with_our_request_id(
    make: Callable[[], httpx.Response],
) -> None:
    gateway = Recorder(make())
    with (
        sync_client(gateway, max_retries=0) as client,
        bind_context(request_id="req-hostile"),
        pytest.raises(GatewayError) as caught,
    ):
        read_chat(client)
    assert (caught.value.request_id, caught.value.attempts) == ("req-hostile", 1)
    assert "req-hostile" in str(caught.value)


@pytest.mark.parametrize("make", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_async_a_hostile_answer_is_a_gateway_error_with_our_request_id(
    make: Callable[[], httpx.Response],
) -> None:
    gateway = Recorder(make())
    async with async_client(gateway, max_retries=0) as client:
        with bind_context(request_id="req-hostile"), pytest.raises(GatewayError) as caught:
            await aread_chat(client)
    assert (caught.value.request_id, caught.value.attempts) == ("req-hostile", 1)


READERS: dict[str, Callable[[GatewayClient], object]] = {
    "embeddings": lambda client: client.embeddings.create(model="e", input=["a"]).vectors,
    "models": lambda client: client.models.list().ids,
}
WRONG_SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "embeddings data is a dict": ("embeddings", {"data": {"a": 1}}),
    "an embedding item is a string": ("embeddings", {"data": ["x"]}),
    "an embedding is a string": ("embeddings", {"data": [{"index": 0, "embedding": "x"}]}),
    "a model item is a number": ("models", {"data": [1]}),
    "a model id is a list": ("models", {"data": [{"id": []}]}),
}


@pytest.mark.parametrize(("kind", "body"), WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_wrong_shapes_of_embeddings_and_models_are_malformed_response_errors(
    kind: str, body: dict[str, Any]
) -> None:
    gateway = Recorder(answer(json=body))
    with (
        sync_client(gateway) as client,
        bind_context(request_id="req-shape"),
        pytest.raises(MalformedResponseError) as caught,
    ):
        READERS[kind](client)
    assert caught.value.request_id == "req-shape"


def test_a_well_formed_answer_with_missing_fields_still_reads_as_empty() -> None:
    gateway = Recorder(answer(json={"choices": [], "data": []}))
    with sync_client(gateway) as client:
        result = client.chat.completions.create(model="m", messages=HI)
        assert (result.content, result.model, result.usage) == ("", None, None)
        assert client.embeddings.create(model="e", input="a").vectors == []
        assert client.models.list().ids == []


STREAM_FAULTS: dict[str, bytes] = {
    "a malformed data line": b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
    b"data: {not json\n\n"
    b'data: {"choices": [{"delta": {"content": "b"}}]}\n\ndata: [DONE]\n\n',
    "an event that is not an object": b"data: [1, 2]\n\ndata: [DONE]\n\n",
    "a chunk of the wrong shape": b'data: {"choices": [{"delta": "x"}]}\n\ndata: [DONE]\n\n',
    "a deeply nested event": b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n",
}


@pytest.mark.parametrize("sse", STREAM_FAULTS.values(), ids=STREAM_FAULTS.keys())
def test_a_malformed_stream_event_is_an_error_not_skipped(sse: bytes) -> None:
    gateway = Recorder(answer(content=sse))
    with (
        sync_client(gateway) as client,
        bind_context(request_id="req-sse"),
        pytest.raises(MalformedResponseError) as caught,
    ):
        read_stream(client)
    assert caught.value.request_id == "req-sse"


@pytest.mark.parametrize("sse", STREAM_FAULTS.values(), ids=STREAM_FAULTS.keys())
async def test_async_a_malformed_stream_event_is_an_error_not_skipped(sse: bytes) -> None:
    gateway = Recorder(answer(content=sse))
    async with async_client(gateway) as client:
        with pytest.raises(MalformedResponseError):
            await aread_stream(client)


def test_a_corrupt_compressed_stream_is_a_gateway_error() -> None:
    gateway = Recorder(gzipped_garbage())
    with sync_client(gateway) as client, pytest.raises(GatewayError):
        read_stream(client)


def sse_of(*events: dict[str, Any] | str) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events
    )


def delta(content: str, finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}]
    }


# What Portkey sends when its upstream's stream is cut: the events so far, then a clean end.
CUT_CLEANLY = sse_of(delta("Hello "), delta("from "))
COMPLETE_STREAMS = {
    "[DONE] without a finish reason": sse_of(delta("Hello "), delta("there"), "[DONE]"),
    "a finish reason without [DONE]": sse_of(delta("Hello "), delta("there", "stop")),
    "both": sse_of(delta("Hello "), delta("there"), delta("", "stop"), "[DONE]"),
}


def test_a_stream_that_ends_without_done_or_a_finish_reason_is_a_connection_error() -> None:
    gateway = Recorder(answer(content=CUT_CLEANLY))
    deltas: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model="m", messages=HI, stream=True):
            deltas.append(chunk.delta)

    with (
        sync_client(gateway) as client,
        bind_context(request_id="req-cut"),
        pytest.raises(GatewayConnectionError) as caught,
    ):
        read()
    assert deltas == ["Hello ", "from "]  # what came before the cut is still seen
    assert (caught.value.request_id, caught.value.attempts) == ("req-cut", 1)
    assert "incomplete" in str(caught.value)
    assert len(gateway.requests) == 1  # a stream is never sent again


async def test_async_a_stream_that_ends_without_done_or_a_finish_reason_is_a_connection_error() -> (
    None
):
    gateway = Recorder(answer(content=CUT_CLEANLY))
    async with async_client(gateway) as client:
        with bind_context(request_id="req-cut"), pytest.raises(GatewayConnectionError) as caught:
            await aread_stream(client)
    assert (caught.value.request_id, caught.value.attempts) == ("req-cut", 1)


@pytest.mark.parametrize("body", [b"", b": keep-alive\n\n"], ids=["empty", "comment only"])
def test_a_stream_with_no_event_at_all_is_a_connection_error(body: bytes) -> None:
    with (
        sync_client(Recorder(answer(content=body))) as client,
        pytest.raises(GatewayConnectionError),
    ):
        read_stream(client)


@pytest.mark.parametrize("sse", COMPLETE_STREAMS.values(), ids=COMPLETE_STREAMS.keys())
async def test_a_stream_ended_by_done_or_a_finish_reason_is_complete(sse: bytes) -> None:
    with sync_client(Recorder(answer(content=sse))) as client:
        assert "".join(read_stream(client)) == "Hello there"
    async with async_client(Recorder(answer(content=sse))) as aclient:
        assert "".join(await aread_stream(aclient)) == "Hello there"


def test_a_deeply_nested_503_body_is_still_retried_and_classified() -> None:
    gateway = Recorder(answer(503, content=nested(100_000)), answer(json=completion("ok")))
    with sync_client(gateway, max_retries=1) as client:
        assert client.chat.completions.create(model="m", messages=HI).content == "ok"


def test_a_gzip_bomb_like_error_body_is_compact_in_the_message() -> None:
    body = gzip.compress(json.dumps({"error": {"message": "x" * 5000}}).encode())
    gateway = Recorder(answer(400, headers={"content-encoding": "gzip"}, content=body))
    with sync_client(gateway) as client, pytest.raises(GatewayError) as caught:
        client.models.list()
    assert len(str(caught.value)) < 600


# 9: wall-clock deadlines per attempt and per call --------------------------------------------


SSE_EVENT = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'


class Drip(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that never ends in time: one piece every ``every`` seconds, ``pieces`` in all."""

    def __init__(self, piece: bytes = b" ", every: float = 0.05, pieces: int = 400) -> None:
        self.piece, self.every, self.pieces = piece, every, pieces

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.pieces):
            time.sleep(self.every)
            yield self.piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.pieces):
            await asyncio.sleep(self.every)
            yield self.piece


def dripping(**kwargs: Any) -> Handler:
    return lambda request: httpx.Response(200, stream=Drip(**kwargs))


def test_a_drip_fed_body_ends_at_the_attempt_deadline() -> None:
    with sync_client(dripping(), attempt_deadline=0.3, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(GatewayTimeoutError, match=r"attempt deadline of 0\.3s") as caught:
            client.models.list()
    assert 0.3 <= time.monotonic() - started < 0.3 + 0.5
    assert caught.value.attempts == 1


def test_a_drip_fed_stream_ends_at_the_attempt_deadline() -> None:
    handler = dripping(piece=SSE_EVENT)
    with sync_client(handler, attempt_deadline=0.3) as client:
        started = time.monotonic()
        with bind_context(request_id="req-drip"), pytest.raises(GatewayTimeoutError) as caught:
            read_stream(client)
    assert time.monotonic() - started < 0.3 + 0.5
    assert caught.value.request_id == "req-drip"


async def test_async_a_drip_fed_body_and_stream_end_exactly_at_the_deadline() -> None:
    slow = dripping(piece=SSE_EVENT, every=5.0)  # each piece alone outlasts the deadline
    async with async_client(slow, attempt_deadline=0.3, max_retries=0) as client:
        for read in (aread_chat, aread_stream):
            started = time.monotonic()
            with pytest.raises(GatewayTimeoutError):
                await read(client)
            assert time.monotonic() - started < 0.3 + 0.3


async def test_an_async_attempt_reads_its_body_in_the_cancel_scope_of_its_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scope per read of the body cost about 35k instructions each; one per attempt bounds
    # the send and the read alike.
    scopes: list[float] = []
    fail_after = _attempts.anyio.fail_after

    def counted(delay: float) -> Any:
        scopes.append(delay)
        return fail_after(delay)

    monkeypatch.setattr(_attempts.anyio, "fail_after", counted)

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.dumps(completion("in three reads")).encode()
        third = len(payload) // 3 + 1
        chunks = [payload[i : i + third] for i in range(0, len(payload), third)]

        class Chunks(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

        assert len(chunks) == 3
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=Chunks())

    async with async_client(handler, attempt_deadline=5.0) as client:
        assert (await aread_chat(client))[0] == "in three reads"

    assert len(scopes) == 1


def test_the_call_deadline_bounds_all_attempts_and_waits_together() -> None:
    gateway = Recorder(httpx.Response(503, headers={"retry-after": "0.4"}))
    started = time.monotonic()
    with (
        sync_client(gateway, max_retries=10, call_deadline=1.0) as client,
        pytest.raises(UpstreamError, match="call deadline") as caught,
    ):
        client.models.list()
    assert time.monotonic() - started < 1.0
    assert caught.value.attempts == len(gateway.requests) == 3


def test_a_drip_fed_body_is_retried_only_within_the_call_deadline() -> None:
    # The first attempt ends at 0.3 s, the backoff waits 0.375 to 0.5 s, so the second attempt
    # starts by 0.8 s and its own deadline (start + 0.3 s) falls after the call's at 0.9 s.
    handler = dripping(every=0.01, pieces=2000)
    with sync_client(handler, attempt_deadline=0.3, call_deadline=0.9) as client:
        started = time.monotonic()
        with pytest.raises(GatewayTimeoutError, match="call deadline") as caught:
            client.models.list()
    assert time.monotonic() - started < 0.9 + 0.5
    assert caught.value.attempts == 2


def test_a_gateway_silent_past_the_deadline_times_out_before_the_read_timeout(
    fake_gateway: FakeGateway,
) -> None:
    fake_gateway.queue_response(delay=3.0)
    config = GatewayConfig.from_env({}, base_url=fake_gateway.base_url, max_retries=0)
    with GatewayClient(config, attempt_deadline=0.3, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(GatewayTimeoutError):
            client.models.list()
    assert time.monotonic() - started < 0.3 + 0.5


def test_the_deadlines_come_from_the_environment_and_are_checked() -> None:
    env = {"AIGW_ATTEMPT_DEADLINE": "60", "AIGW_CALL_DEADLINE": "90.5"}
    config = GatewayConfig.from_env(env)
    assert (config.attempt_deadline, config.call_deadline) == (60.0, 90.5)
    assert (GatewayConfig().attempt_deadline, GatewayConfig().call_deadline) == (600.0, None)
    for bad in ({"AIGW_CALL_DEADLINE": "0"}, {"AIGW_ATTEMPT_DEADLINE": "soon"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            GatewayConfig.from_env(bad)


# 2: nothing meant for the gateway goes to another host -------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://other.host/x",
        "http://gw.test/v2/outside",  # same host, outside the base path
        "http://gw.test:8080/v1/x",  # another port
        "https://gw.test/v1/x",  # another scheme
        "/../admin",  # a relative path that climbs out of the base path
    ],
)
def test_a_url_outside_the_gateway_is_refused_before_anything_is_sent(url: str) -> None:
    gateway = Recorder(answer(json={}))
    with (
        sync_client(gateway, extra_headers={"x-gw-auth": "gw-secret"}) as client,
        pytest.raises(InvalidRequestError, match="base_url"),
    ):
        client.request("GET", url)
    assert gateway.requests == []


async def test_async_a_url_outside_the_gateway_is_refused() -> None:
    gateway = Recorder(answer(json={}))
    async with async_client(gateway) as client:
        with pytest.raises(InvalidRequestError):
            await client.request("GET", "https://other.host/x")
    assert gateway.requests == []


def test_absolute_urls_under_base_url_or_propagate_to_are_allowed() -> None:
    gateway = Recorder(answer(json={}))
    with sync_client(gateway, propagate_to=("https://side.test/api",)) as client:
        client.request("GET", "http://gw.test/v1/models")
        client.request("GET", "https://side.test/api/x")
    assert [str(r.url) for r in gateway.requests] == [
        "http://gw.test/v1/models",
        "https://side.test/api/x",
    ]
    assert gateway.sent("authorization") == ["Bearer sk-secret"] * 2


# 1: a forked child never touches its parent's connections ----------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_shared_client_and_leaves_the_parents_alone(
    shared_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    parent = get_client()
    with bind_context(request_id="parent-1"):
        parent.models.list()  # a pooled keep-alive connection now exists
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            child = get_client()
            with bind_context(request_id="child-1"):
                child.models.list()
            status = 0 if child is not parent and get_client() is child else 2
        finally:
            os.write(write_end, bytes([status]))
            os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    assert get_client() is parent
    with bind_context(request_id="parent-2"):
        parent.models.list()
    ids = [request.headers["x-ai-request-id"] for request in fake_gateway.requests]
    assert ids == ["parent-1", "child-1", "parent-2"]


def test_the_shared_client_is_replaced_when_the_process_id_changes(
    shared_config: GatewayConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = get_client()
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)
    child = get_client()
    assert child is not parent
    assert not parent._http.is_closed  # the parent's sockets are not the child's to close
    assert get_client() is child


# 13: closing a client under concurrent use ---------------------------------------------------


def test_a_call_on_a_client_closed_by_another_thread_is_a_gateway_error() -> None:
    client = sync_client(Recorder(answer(json={"data": []})))
    client.close()
    with bind_context(request_id="req-closed"), pytest.raises(GatewayConnectionError) as caught:
        client.models.list()
    assert caught.value.request_id == "req-closed"


async def test_a_shared_async_client_closed_by_one_task_fails_the_others_typed_and_is_replaced(
    shared_config: GatewayConfig,
) -> None:
    taken = get_async_client()
    await taken.aclose()
    with pytest.raises(GatewayConnectionError):
        await taken.models.list()
    fresh = get_async_client()
    assert fresh is not taken
    assert (await fresh.models.list()).ids


# 16: credentials in a URL reach no log line, exception or repr --------------------------------

PASSWORD = "hunter2"
BASIC = "Basic " + base64.b64encode(f"gw-user:{PASSWORD}".encode()).decode()


def with_credentials(base_url: str) -> str:
    return base_url.replace("http://", f"http://gw-user:{PASSWORD}@")


def shown_everywhere(caplog: pytest.LogCaptureFixture, *errors: BaseException) -> str:
    """Every log line captured and every exception's formatted traceback, as one text."""
    lines = [caplog.text, *(f"{record.args!r}" for record in caplog.records)]
    lines += ["".join(traceback.format_exception(error)) for error in errors]
    return "\n".join(lines)


def test_credentials_in_base_url_go_as_basic_auth_and_show_in_no_log_line(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = GatewayConfig.from_env({}, base_url=with_credentials(fake_gateway.base_url))
    with GatewayClient(config) as client:
        client.chat.completions.create(model="m", messages=HI)
        client.models.list()
        shown = repr(client)

    assert [r.headers.get("authorization") for r in fake_gateway.requests] == [BASIC, BASIC]
    assert "HTTP Request: POST" in caplog.text  # httpx's own line is there, without them
    assert PASSWORD not in shown_everywhere(caplog) + shown


async def test_async_credentials_in_base_url_show_in_no_log_line_or_error(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = GatewayConfig.from_env({}, base_url=with_credentials(fake_gateway.base_url))
    fake_gateway.queue_response(500, headers={"retry-after-ms": "1"}, times=3)
    async with AsyncGatewayClient(config, max_retries=1) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.chat.completions.create(model="m", messages=HI)

    assert fake_gateway.requests[0].headers.get("authorization") == BASIC
    assert "HTTP Request: POST" in caplog.text
    assert PASSWORD not in shown_everywhere(caplog, caught.value)


def test_credentials_in_an_absolute_url_go_as_basic_auth_only(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = GatewayConfig.from_env({}, base_url=fake_gateway.base_url)
    with GatewayClient(config) as client:
        client.request("GET", with_credentials(f"{fake_gateway.base_url}/models"))

    assert fake_gateway.requests[0].headers.get("authorization") == BASIC
    assert PASSWORD not in shown_everywhere(caplog)


def test_a_connection_error_to_a_url_with_credentials_shows_none_of_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeGateway() as gone:
        base_url = with_credentials(gone.base_url)  # nothing listens there any more
    config = GatewayConfig.from_env({}, base_url=base_url, max_retries=0)
    with GatewayClient(config) as client, pytest.raises(GatewayConnectionError) as caught:
        client.models.list()

    assert PASSWORD not in shown_everywhere(caplog, caught.value)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_openai_sdk_sends_base_url_credentials_as_basic_auth_and_logs_none(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture, asynchronous: bool
) -> None:
    from aigw_middleware.openai import AsyncOpenAI, OpenAI

    caplog.set_level(logging.DEBUG)
    config = GatewayConfig.from_env({}, base_url=with_credentials(fake_gateway.base_url))
    if asynchronous:

        async def call() -> None:
            async with AsyncOpenAI(config=config) as sdk:
                await sdk.models.list()
                await sdk.with_options(timeout=5.0).models.list()

        asyncio.run(call())
    else:
        with OpenAI(config=config) as sdk:
            sdk.models.list()
            sdk.with_options(timeout=5.0).models.list()

    assert [r.headers.get("authorization") for r in fake_gateway.requests] == [BASIC, BASIC]
    assert "HTTP Request: GET" in caplog.text
    assert PASSWORD not in shown_everywhere(caplog)


def test_every_client_built_here_shares_one_tls_context() -> None:
    # A TLS context per client loads the CA bundle each time: a client per event loop
    # (asyncio.run in a loop) grew the resident set by about 40 KB per loop.
    base = "http://127.0.0.1:9/v1"
    sync_client, async_client = GatewayClient(base_url=base), AsyncGatewayClient(base_url=base)
    plain, plain_async = httpx_client(base_url=base), async_httpx_client(base_url=base)
    try:
        transports = [sync_client._http._transport, async_client._http._transport]
        transports += [plain._transport, plain_async._transport]
        contexts = {id(transport.inner._pool._ssl_context) for transport in transports}
        assert len(contexts) == 1
    finally:
        sync_client.close()
        plain.close()
        asyncio.run(async_client.aclose())
        asyncio.run(plain_async.aclose())
