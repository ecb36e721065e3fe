"""Gateway faults: the typed exception, the attempts, a bounded wall time, nothing left behind.

Each check calls a FakeGateway told to misbehave and records what happened: the exception
raised, the attempts made, the seconds it took. Retries are made fast with
``retry-after-ms: 1``. Every check runs between two counts of this process's threads, sockets
and file descriptors, taken before its gateway starts and after it stops: the second may not be
higher.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aigw_middleware import (
    AsyncGatewayClient,
    GatewayConnectionError,
    GatewayStatusError,
    GatewayTimeoutError,
    RateLimitError,
    UpstreamError,
    bind_context,
)
from aigw_middleware.testing import FakeGateway
from tests.e2e.portkey import PortkeyMissing, running_portkey, upstream_headers
from tests.e2e.servers import ServerProcess

from .conftest import Figures
from .faults import FAST_RETRY, MESSAGES, REQUEST_ID, chat, config_for, ids_at, record, stream
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
