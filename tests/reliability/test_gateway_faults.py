"""Gateway faults: the typed exception, the attempts, a bounded wall time, nothing left behind.

Each check calls a FakeGateway told to misbehave and records what happened: the exception
raised, the attempts made, the seconds it took. Retries are made fast with
``retry-after-ms: 1``. Every check runs between two counts of this process's threads, sockets
and file descriptors, taken before its gateway starts and after it stops: the second may not be
higher.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from typing import Any

import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    BadRequestError,
    GatewayClient,
    GatewayConnectionError,
    GatewayError,
    GatewayStatusError,
    GatewayTimeoutError,
    RateLimitError,
    UpstreamError,
    bind_context,
)
from aigw_middleware.errors import InvalidRequestError, MalformedResponseError
from aigw_middleware.testing import FakeGateway
from tests.e2e.portkey import PortkeyMissing, running_portkey, upstream_headers
from tests.e2e.servers import ServerProcess

from .conftest import Figures
from .faults import (
    COMPLETION,
    FAST_RETRY,
    MESSAGES,
    REQUEST_ID,
    DripGateway,
    async_chat,
    chat,
    config_for,
    ids_at,
    observe,
    record,
    stream,
)
from .resources import nothing_left_behind


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    with nothing_left_behind():
        yield


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as gw:
        yield gw


# ---------------------------------------------------------------------------------------------
# Rate limits and 5xx


@pytest.mark.parametrize(
    "retry_after",
    [{"retry-after-ms": "1"}, {"Retry-After": "0"}],
    ids=["retry-after-ms", "seconds"],
)
def test_a_429_with_retry_after_is_retried_at_once_then_raised_as_rate_limit_error(
    gateway: FakeGateway, figures: Figures, retry_after: dict[str, str]
) -> None:
    gateway.queue_response(429, headers=retry_after, times=3)

    observed = chat(gateway.base_url)

    record(figures, f"429 with {next(iter(retry_after))}", observed)
    assert isinstance(observed.error, RateLimitError)
    assert (observed.error.status, observed.attempts) == (429, 3)
    assert observed.error.request_id == REQUEST_ID
    assert observed.seconds < 2.0
    assert ids_at(gateway) == [REQUEST_ID] * 3


def test_a_429_without_retry_after_waits_the_backoff_then_raises(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(429, times=2)

    observed = chat(gateway.base_url, max_retries=1)

    record(figures, "429 without Retry-After", observed)
    assert isinstance(observed.error, RateLimitError)
    assert observed.attempts == 2
    assert 0.3 <= observed.seconds < 3.0  # one backoff of 0.5 s minus up to 25 % jitter


def test_a_429_asking_for_more_than_a_minute_fails_at_once(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(429, headers={"Retry-After": "120"}, times=3)

    observed = chat(gateway.base_url)

    record(figures, "429 with Retry-After 120", observed)
    assert isinstance(observed.error, RateLimitError)
    assert (observed.attempts, observed.error.retry_after) == (1, 120)
    assert observed.seconds < 1.0


def test_a_burst_of_5xx_shorter_than_the_retries_ends_in_the_answer(
    gateway: FakeGateway, figures: Figures
) -> None:
    for status in (500, 502, 503):
        gateway.queue_response(status, headers=FAST_RETRY)

    observed = chat(gateway.base_url, max_retries=3)

    record(figures, "5xx burst, then the answer", observed)
    assert observed.error is None
    assert observed.result.content.startswith("Hello from FakeGateway")
    assert observed.seconds < 2.0
    assert ids_at(gateway) == [REQUEST_ID] * 4


def test_a_burst_of_5xx_longer_than_the_retries_raises_upstream_error(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(503, headers=FAST_RETRY, times=5)

    observed = chat(gateway.base_url)

    record(figures, "5xx burst beyond the retries", observed)
    assert isinstance(observed.error, UpstreamError)
    assert (observed.error.status, observed.attempts) == (503, 3)
    assert observed.error.gateway_request_id == f"fgw-{len(gateway.requests)}"
    assert observed.seconds < 2.0


# ---------------------------------------------------------------------------------------------
# Connections dropped before and after the request was sent


def test_a_gateway_that_refuses_connections_raises_connection_error_after_the_retries(
    figures: Figures,
) -> None:
    with FakeGateway() as gone:
        base_url = gone.base_url  # stopped: nothing listens there any more

    observed = chat(base_url, max_retries=1)

    record(figures, "connection refused (before sending)", observed)
    assert isinstance(observed.error, GatewayConnectionError)
    assert not isinstance(observed.error, GatewayTimeoutError)
    assert (observed.attempts, observed.error.request_id) == (2, REQUEST_ID)
    assert observed.seconds < 3.0  # one backoff of at most 0.5 s


def test_a_post_dropped_after_it_was_sent_is_retried_under_one_idempotency_key(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(drop=True)

    observed = chat(gateway.base_url)

    record(figures, "dropped after sending, then the answer", observed)
    assert observed.error is None
    keys = [request.headers.get("idempotency-key") for request in gateway.requests]
    assert len(keys) == 2
    assert keys[0], "the first attempt carried no Idempotency-Key"
    assert keys[0] == keys[1], f"idempotency keys of the two attempts: {keys}"
    assert observed.seconds < 3.0  # one backoff of at most 0.5 s


def test_a_post_dropped_every_time_raises_connection_error_with_its_attempts(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(drop=True, times=5)

    observed = chat(gateway.base_url, max_retries=1)

    record(figures, "dropped after sending, every time", observed)
    assert isinstance(observed.error, GatewayConnectionError)
    assert (observed.error.request_id, observed.attempts) == (REQUEST_ID, len(gateway.requests))
    assert observed.attempts == 2
    keys = {request.headers.get("idempotency-key") for request in gateway.requests}
    assert None not in keys, "an attempt carried no Idempotency-Key"
    assert len(keys) == 1, f"idempotency keys: {keys}"
    assert observed.seconds < 3.0


def test_a_post_without_idempotency_key_dropped_after_sending_is_not_sent_again(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(drop=True, times=3)
    with GatewayClient(config_for(gateway.base_url)) as client, bind_context(request_id=REQUEST_ID):
        observed = observe(
            lambda: client.request(
                "POST", "chat/completions", json={}, headers={"Idempotency-Key": ""}
            )
        )

    record(figures, "dropped after sending, no idempotency key", observed)
    assert isinstance(observed.error, GatewayConnectionError)
    assert (observed.attempts, len(gateway.requests)) == (1, 1)


def test_a_crlf_in_a_custom_header_fails_at_once_and_sends_nothing(
    gateway: FakeGateway, figures: Figures
) -> None:
    with GatewayClient(config_for(gateway.base_url)) as client:
        observed = observe(
            lambda: client.request(
                "POST", "chat/completions", json={}, headers={"X-Note": "a\r\nX-Evil: 1"}
            )
        )

    record(figures, "CRLF in a custom header", observed)
    assert isinstance(observed.error, InvalidRequestError), repr(observed.error)
    assert isinstance(observed.error, ValueError)
    assert gateway.requests == []
    assert observed.seconds < 0.5


# ---------------------------------------------------------------------------------------------
# Slow and broken answers


def test_a_stream_cut_mid_way_raises_connection_error_after_the_chunks_before_the_cut(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(stream_cut_after=3)

    deltas, observed = stream(gateway.base_url)

    record(figures, "stream cut after 3 events", observed)
    assert isinstance(observed.error, GatewayConnectionError), repr(observed.error)
    assert (observed.error.request_id, observed.attempts) == (REQUEST_ID, 1)
    assert "".join(deltas) == "Hello from "
    assert len(gateway.requests) == 1


async def test_an_async_stream_cut_mid_way_raises_connection_error(
    gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(stream_cut_after=3)
    deltas: list[str] = []
    async with AsyncGatewayClient(config_for(gateway.base_url)) as client:
        with bind_context(request_id=REQUEST_ID):
            chunks = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)

        async def read() -> None:
            async with chunks:
                async for chunk in chunks:
                    deltas.append(chunk.delta)

        with pytest.raises(GatewayConnectionError) as caught:
            await read()

    figures("gateway fault: async stream cut after 3 events", raised=type(caught.value).__name__)
    assert caught.value.request_id == REQUEST_ID
    assert "".join(deltas) == "Hello from "


ATTEMPT_DEADLINE = 1.0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("part", ["body", "head"])
def test_a_drip_fed_answer_is_cut_at_the_attempt_deadline(
    figures: Figures, mode: str, part: str
) -> None:
    # A byte every 0.2 s (the head: every 0.05 s): several seconds in all, while each read
    # waits far less than the read timeout.
    drip = DripGateway(COMPLETION[:30], interval=0.2 if part == "body" else 0.05)
    drip.drip_head = part == "head"
    settings = {"timeout": 5.0, "attempt_deadline": ATTEMPT_DEADLINE, "max_retries": 0}
    with drip.running():
        if mode == "sync":
            observed = chat(drip.base_url, **settings)
        else:
            observed = asyncio.run(async_chat(drip.base_url, **settings))

    record(figures, f"drip-fed {part} ({mode}), attempt deadline 1 s", observed)
    assert isinstance(observed.error, GatewayTimeoutError), repr(observed.error)
    assert observed.attempts == 1
    assert observed.seconds < ATTEMPT_DEADLINE + 0.5


@pytest.mark.parametrize("part", ["body", "head"])
def test_a_drip_fed_stream_is_cut_at_the_attempt_deadline(figures: Figures, part: str) -> None:
    events = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n' * 20
    drip = DripGateway(events, interval=0.02, content_type="text/event-stream")
    drip.drip_head = part == "head"
    with drip.running():
        _, observed = stream(
            drip.base_url, timeout=5.0, attempt_deadline=ATTEMPT_DEADLINE, max_retries=0
        )

    record(figures, f"drip-fed stream {part}, attempt deadline 1 s", observed)
    assert isinstance(observed.error, GatewayTimeoutError), repr(observed.error)
    assert observed.seconds < ATTEMPT_DEADLINE + 0.5


def test_drip_fed_retries_end_at_the_call_deadline(figures: Figures) -> None:
    drip = DripGateway(COMPLETION[:30], interval=0.2)
    with drip.running():
        observed = chat(
            drip.base_url, timeout=5.0, attempt_deadline=0.6, call_deadline=1.5, max_retries=5
        )

    record(figures, "drip-fed body, call deadline 1.5 s", observed)
    assert isinstance(observed.error, GatewayTimeoutError), repr(observed.error)
    assert 2 <= drip.connections <= 3
    assert observed.seconds < 1.5 + 0.2 + 0.5


NESTED = "[" * 100_000
HUGE_INT = '{"id": 1' + "0" * 5000 + "}"


@pytest.mark.parametrize(
    ("name", "queued"),
    [
        ("a 200 that is not JSON", {"body": "<html>upstream said no</html>"}),
        ("a 200 with an integer of 5,000 digits", {"body": HUGE_INT}),
        ("a 200 nested 100,000 deep", {"body": NESTED}),
        ("a 500 nested 100,000 deep", {"status": 500, "body": NESTED}),
        (
            "a corrupt gzip body",
            {"body": b"\x1f\x8bnot gzip", "headers": {"Content-Encoding": "gzip"}},
        ),
        (
            "a truncated gzip body",
            {"body": gzip.compress(COMPLETION)[:40], "headers": {"Content-Encoding": "gzip"}},
        ),
        ("JSON of the wrong shape", {"json": {"choices": [{"message": "text"}]}}),
    ],
)
def test_a_malformed_body_raises_a_gateway_error_with_our_request_id(
    gateway: FakeGateway, figures: Figures, name: str, queued: dict[str, Any]
) -> None:
    gateway.queue_response(**queued)

    observed = chat(gateway.base_url, max_retries=0)

    record(figures, name, observed)
    assert isinstance(observed.error, GatewayError), repr(observed.error)
    assert (observed.error.request_id, observed.attempts) == (REQUEST_ID, 1)
    assert observed.seconds < 1.0


def test_a_malformed_event_in_a_stream_is_a_gateway_error_not_a_lost_chunk(
    gateway: FakeGateway, figures: Figures
) -> None:
    events = [
        'data: {"choices":[{"index":0,"delta":{"content":"one "}}]}',
        'data: {"choices":[{"index":0,"delta":{"content":"two',  # cut JSON
        'data: {"choices":[{"index":0,"delta":{"content":"three"}}]}',
        "data: [DONE]",
    ]
    gateway.queue_response(body="\n\n".join(events) + "\n\n")

    deltas, observed = stream(gateway.base_url)

    record(figures, "malformed event in a stream", observed)
    assert isinstance(observed.error, MalformedResponseError), f"no error; deltas {deltas}"
    assert (observed.error.request_id, deltas) == (REQUEST_ID, ["one "])


def test_a_hostile_json_error_body_gives_a_short_one_line_typed_error(
    gateway: FakeGateway, figures: Figures
) -> None:
    error = {
        "message": "x" * 1_000_000 + "\r\nX-Injected: 1",
        "type": "invalid\r\nX-Injected: 1" + "t" * 100_000,
        "code": "\x1b[31mred\x00",
        "param": {"nested": [[[["deep"]]]]},
    }
    gateway.queue_response(400, json={"error": error})

    observed = chat(gateway.base_url)

    record(figures, "hostile JSON 400 error body", observed)
    assert isinstance(observed.error, BadRequestError)
    assert (observed.error.request_id, observed.attempts) == (REQUEST_ID, 1)
    shown = str(observed.error)
    assert len(shown) < 1000
    assert shown.isprintable(), repr(shown[-200:])


# ---------------------------------------------------------------------------------------------
# Redirects to another host


def test_a_redirect_to_another_host_is_not_followed(
    gateway: FakeGateway, other_host: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(307, headers={"Location": f"{other_host.base_url}/chat/completions"})

    observed = chat(gateway.base_url)

    record(figures, "307 to another host", observed)
    assert isinstance(observed.error, GatewayStatusError)
    assert (observed.error.status, observed.attempts) == (307, 1)
    assert other_host.requests == []


def test_an_absolute_url_to_another_host_is_refused_and_gets_nothing(
    gateway: FakeGateway, other_host: FakeGateway, figures: Figures
) -> None:
    config = config_for(gateway.base_url, extra_headers={"x-portkey-api-key": "pk-secret"})
    with GatewayClient(config) as client, bind_context(request_id=REQUEST_ID):
        observed = observe(lambda: client.request("GET", f"{other_host.base_url}/models"))

    record(figures, "absolute URL to another host", observed)
    assert isinstance(observed.error, InvalidRequestError), repr(observed.error)
    assert other_host.requests == []


def test_the_openai_sdk_sends_no_secret_across_a_redirect_to_another_host(
    gateway: FakeGateway, other_host: FakeGateway, figures: Figures
) -> None:
    from aigw_middleware.openai import OpenAI

    gateway.queue_response(307, headers={"Location": f"{other_host.base_url}/chat/completions"})
    config = config_for(gateway.base_url, extra_headers={"x-portkey-api-key": "pk-secret"})
    with OpenAI(config=config, max_retries=0) as sdk, bind_context(request_id=REQUEST_ID):
        observed = observe(
            lambda: sdk.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        )

    record(figures, "OpenAI SDK, 307 to another host", observed)
    assert len(other_host.requests) == 1  # the SDK follows redirects; nothing secret goes along
    leaked = {
        name: value
        for request in other_host.requests
        for name, value in request.headers.items()
        if name in ("authorization", "x-portkey-api-key") or name.startswith("x-ai-")
    }
    assert leaked == {}


# ---------------------------------------------------------------------------------------------
# The same faults behind the real Portkey gateway (upstream: the FakeGateway)


@pytest.fixture(scope="module")
def portkey() -> Iterator[ServerProcess]:
    try:
        with running_portkey() as server:
            yield server
    except PortkeyMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def through(portkey: ServerProcess, upstream: FakeGateway) -> dict[str, Any]:
    """Config overrides for calls to Portkey, which sends them on to ``upstream``."""
    return {
        "base_url": f"{portkey.base_url}/v1",
        "header_profile": "portkey",
        "extra_headers": upstream_headers(upstream.base_url),
        "disable_proxy": True,
    }


@pytest.mark.parametrize(
    ("retry_after", "max_retries", "bound"),
    [({"Retry-After": "0"}, 2, 3.0), ({}, 1, 3.0)],
    ids=["with-retry-after", "without-retry-after"],
)
def test_portkey_passes_an_upstream_429_on_and_it_is_retried_then_raised(
    portkey: ServerProcess,
    gateway: FakeGateway,
    figures: Figures,
    retry_after: dict[str, str],
    max_retries: int,
    bound: float,
) -> None:
    gateway.queue_response(429, headers=retry_after, times=3)

    observed = chat(**through(portkey, gateway), max_retries=max_retries)

    record(
        figures,
        f"Portkey: upstream 429 {'with' if retry_after else 'without'} Retry-After",
        observed,
    )
    assert isinstance(observed.error, RateLimitError)
    assert (observed.attempts, observed.error.request_id) == (max_retries + 1, REQUEST_ID)
    assert observed.seconds < bound
    assert ids_at(gateway) == [REQUEST_ID] * (max_retries + 1)


def test_portkey_with_an_upstream_5xx_burst_ends_in_the_answer(
    portkey: ServerProcess, gateway: FakeGateway, figures: Figures
) -> None:
    gateway.queue_response(503, headers=FAST_RETRY, times=2)

    observed = chat(**through(portkey, gateway))

    record(figures, "Portkey: upstream 5xx burst, then the answer", observed)
    assert observed.error is None
    assert observed.result.content.startswith("Hello from FakeGateway")
    assert ids_at(gateway) == [REQUEST_ID] * 3


@pytest.mark.parametrize(
    ("fault", "queued"),
    [
        ("upstream drops the connection", {"drop": True}),
        ("upstream 500 nested 100,000 deep", {"status": 500, "body": "[" * 100_000}),
    ],
)
def test_portkey_turns_a_broken_upstream_into_an_upstream_error(
    portkey: ServerProcess,
    gateway: FakeGateway,
    figures: Figures,
    fault: str,
    queued: dict[str, Any],
) -> None:
    gateway.queue_response(**queued, times=3)

    observed = chat(**through(portkey, gateway), max_retries=1)

    record(figures, f"Portkey: {fault}", observed)
    assert isinstance(observed.error, UpstreamError)
    assert (observed.attempts, observed.error.request_id) == (2, REQUEST_ID)
    assert observed.seconds < 3.0


def test_a_stream_cut_upstream_of_portkey_is_a_connection_error_not_a_short_answer(
    portkey: ServerProcess, gateway: FakeGateway, figures: Figures
) -> None:
    """Portkey ends its own stream cleanly when the upstream's is cut: no [DONE], no finish
    reason, no broken connection. The client must not take that for the whole answer."""
    gateway.queue_response(stream_cut_after=3)

    deltas, observed = stream(**through(portkey, gateway))

    record(figures, "Portkey: upstream stream cut after 3 events", observed)
    assert isinstance(observed.error, GatewayConnectionError), f"no error; deltas {deltas}"
    assert (observed.error.request_id, observed.attempts) == (REQUEST_ID, 1)
    # Portkey may drop the last event it had buffered when its upstream breaks, so what
    # arrives is a prefix of the three events sent; never more, never a finished answer.
    assert "Hello from ".startswith("".join(deltas))
    assert observed.seconds < 2.0
