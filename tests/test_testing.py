"""Specification of FakeGateway, the fake OpenAI-compatible gateway in aigw_middleware.testing."""

from __future__ import annotations

import asyncio
import json
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from aigw_middleware._fakeserver import Server
from aigw_middleware.testing import (
    FakeGateway,
    RecordedRequest,
    fake_gateway,  # noqa: F401 - registers the fixture until the pytest11 entry point is installed
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHAT = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi to the team"},
    ],
}


def client_for(gw: FakeGateway, timeout: float = 2.0) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, timeout=timeout, trust_env=False)


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def read_lines_into(lines: list[str], response: httpx.Response) -> None:
    for line in response.iter_lines():
        lines.append(line)


def test_base_url_is_loopback_with_v1_prefix() -> None:
    with FakeGateway() as gw:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", gw.base_url)
        assert gw.base_url == f"http://127.0.0.1:{gw.port}/v1"


def test_chat_completion_echoes_last_user_message() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        response = client.post("/chat/completions", json=CHAT)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "fgw-1"
    completion = response.json()
    assert completion["id"] == "chatcmpl-fgw-1"
    assert completion["object"] == "chat.completion"
    assert completion["created"] == 1700000000
    assert completion["model"] == "gpt-4o-mini"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello from FakeGateway: Say hi to the team",
            },
            "finish_reason": "stop",
        }
    ]
    # Whitespace word counts: 3 + 5 words in, 8 words out.
    assert completion["usage"] == {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}


def test_chat_completion_is_deterministic_except_for_ids() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        first = client.post("/chat/completions", json=CHAT).json()
        second = client.post("/chat/completions", json=CHAT).json()

    assert (first.pop("id"), second.pop("id")) == ("chatcmpl-fgw-1", "chatcmpl-fgw-2")
    assert first == second


def test_chat_completion_echo_is_cut_to_200_characters() -> None:
    long_text = "x" * 500
    request = {"model": "m", "messages": [{"role": "user", "content": long_text}]}
    with FakeGateway() as gw, client_for(gw) as client:
        content = client.post("/chat/completions", json=request).json()["choices"][0]["message"]
    assert content["content"] == "Hello from FakeGateway: " + "x" * 200


def test_streamed_chat_completion_matches_plain_content() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        plain = client.post("/chat/completions", json=CHAT).json()
        with client.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.headers["x-request-id"] == "fgw-2"
            events = sse_data(list(response.iter_lines()))

    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["id"] == "chatcmpl-fgw-2" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    words = [chunk["choices"][0]["delta"]["content"] for chunk in chunks[1:-1]]
    assert words == ["Hello ", "from ", "FakeGateway: ", "Say ", "hi ", "to ", "the ", "team"]
    assert "".join(words) == plain["choices"][0]["message"]["content"]


def test_streamed_chat_completion_reports_usage_when_asked() -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with (
        FakeGateway() as gw,
        client_for(gw) as client,
        client.stream("POST", "/chat/completions", json=request) as response,
    ):
        events = sse_data(list(response.iter_lines()))

    assert events[-1] == "[DONE]"
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16}


def test_embeddings_are_deterministic_8_dimensional_vectors() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        batch = client.post(
            "/embeddings", json={"model": "text-embedding-3-small", "input": ["a b", "c"]}
        ).json()
        single = client.post("/embeddings", json={"input": "a b"}).json()

    assert batch["object"] == "list"
    assert batch["model"] == "text-embedding-3-small"
    assert [item["index"] for item in batch["data"]] == [0, 1]
    vectors = [item["embedding"] for item in batch["data"]]
    assert all(len(vector) == 8 for vector in vectors)
    assert all(isinstance(value, float) for vector in vectors for value in vector)
    assert vectors[0] != vectors[1]
    assert single["data"][0]["embedding"] == vectors[0]
    assert batch["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_models_lists_the_known_model_ids() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        response = client.get("/models")

    assert response.status_code == 200
    models = response.json()
    assert models["object"] == "list"
    assert [model["id"] for model in models["data"]] == [
        "gpt-4o-mini",
        "openai/gpt-4o-mini",
        "text-embedding-3-small",
    ]


def test_unknown_path_is_an_openai_style_404() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        response = client.post("/completions/legacy", json={})

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "fgw-1"
    error = response.json()["error"]
    assert error["type"] == "not_found_error"
    assert error["code"] is None
    assert isinstance(error["message"], str)


def test_malformed_json_is_an_openai_style_400() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        response = client.post(
            "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gw.last is not None
    assert gw.last.body == b"{not json"
    assert gw.last.json is None


def test_requests_are_recorded_in_order_with_headers_and_json() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        assert gw.last is None
        client.post(
            "/chat/completions",
            json=CHAT,
            headers=[("X-Correlation-ID", "corr-1"), ("X-Tag", "a"), ("X-Tag", "b")],
        )
        client.get("/models", params={"limit": "2"})

    assert [(r.method, r.path) for r in gw.requests] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models?limit=2"),
    ]
    chat = gw.requests[0]
    assert isinstance(chat, RecordedRequest)
    assert chat.headers["x-correlation-id"] == "corr-1"
    assert chat.headers["X-CORRELATION-ID"] == "corr-1"
    assert chat.headers.get_list("x-tag") == ["a", "b"]
    assert chat.json == CHAT
    assert json.loads(chat.body) == CHAT
    assert gw.last == gw.requests[1]
    assert gw.last.json is None


def test_clear_forgets_requests_and_queued_responses() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        client.get("/models")
        gw.queue_response(500)
        gw.clear()
        assert gw.requests == []
        assert gw.last is None
        assert client.get("/models").status_code == 200


def test_queued_response_replaces_the_next_answer_once() -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit_error", "code": None}}
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(429, headers={"Retry-After": "1"}, json=error)
        limited = client.post("/chat/completions", json=CHAT)
        normal = client.post("/chat/completions", json=CHAT)

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["content-type"] == "application/json"
    assert limited.headers["x-request-id"] == "fgw-1"
    assert limited.json() == error
    assert normal.status_code == 200


def test_queued_responses_apply_to_any_path_in_fifo_order() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(503, times=2)
        gw.queue_response(body="plain text")
        responses = [client.get(path) for path in ("/anything", "/models", "/models", "/models")]

    assert [r.status_code for r in responses] == [503, 503, 200, 200]
    assert responses[2].text == "plain text"
    assert responses[3].json()["object"] == "list"


def test_queued_text_body_is_sent_as_is() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(502, body="Bad gateway")
        response = client.get("/models")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Bad gateway"


def test_queued_error_status_without_body_gets_an_openai_style_error() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(503)
        response = client.get("/models")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "server_error"


def test_queued_200_without_body_adds_headers_to_the_normal_answer() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(headers={"x-request-id": "gw-chosen", "x-extra": "yes"})
        response = client.get("/models")

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "gw-chosen"
    assert response.headers["x-extra"] == "yes"
    assert response.json()["object"] == "list"


def test_queued_delay_longer_than_client_timeout_times_out() -> None:
    with FakeGateway() as gw, client_for(gw, timeout=0.2) as client:
        gw.queue_response(delay=1.0)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/models")
        assert time.monotonic() - started < 1.0


def test_queued_drop_closes_the_connection_without_answering() -> None:
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(drop=True)
        with pytest.raises(httpx.TransportError):
            client.post("/chat/completions", json=CHAT)
        assert gw.last is not None
        assert gw.last.json == CHAT
        assert client.post("/chat/completions", json=CHAT).status_code == 200


def test_stream_cut_after_breaks_the_chunked_body() -> None:
    received: list[str] = []
    with FakeGateway() as gw, client_for(gw) as client:
        gw.queue_response(stream_cut_after=2)
        with client.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                read_lines_into(received, response)

    assert len(sse_data(received)) == 2


def test_stop_is_idempotent_and_prompt_with_a_delayed_response_pending() -> None:
    errors: list[BaseException] = []
    gw = FakeGateway().start()

    def call() -> None:
        with client_for(gw, timeout=5.0) as client:
            try:
                client.get("/models")
            except httpx.TransportError as exc:
                errors.append(exc)

    gw.queue_response(delay=30)
    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2.0
    while not gw.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gw.requests, "the delayed request never arrived"

    started = time.monotonic()
    gw.stop()
    assert time.monotonic() - started < 1.0
    gw.stop()
    caller.join(timeout=2.0)
    assert not caller.is_alive()
    assert len(errors) == 1


async def test_a_burst_of_150_concurrent_connections_is_served() -> None:
    # Each call opens its own connection at the same moment, as a test suite or a load
    # generator does; a listen backlog of 5 left some of them hanging until the timeout.
    limits = httpx.Limits(max_connections=150, max_keepalive_connections=0)
    with FakeGateway() as gw:
        async with httpx.AsyncClient(
            base_url=gw.base_url, timeout=5.0, limits=limits, trust_env=False
        ) as client:
            responses = await asyncio.gather(
                *(client.get("/models") for _ in range(150)), return_exceptions=True
            )
        failures = [repr(r) for r in responses if not isinstance(r, httpx.Response)]
        assert failures == []
        assert [r.status_code for r in responses if isinstance(r, httpx.Response)] == [200] * 150
        assert len(gw.requests) == 150
    # A dropped SYN is retried by the kernel after a second, so an overflowing backlog shows as
    # a slower burst rather than a failure; a wall-clock bound is not reliable on a loaded
    # machine, so the backlog the server asks of the kernel is checked instead.
    assert Server.request_queue_size >= 150


def test_inspection_endpoint_lists_recorded_requests_as_json() -> None:
    with FakeGateway() as gw, httpx.Client(timeout=2.0, trust_env=False) as client:
        client.post(
            f"{gw.base_url}/chat/completions",
            json=CHAT,
            headers=[("X-AI-Request-Id", "inspect-1"), ("X-Tag", "a"), ("X-Tag", "b")],
        )
        client.get(f"{gw.base_url}/models?limit=2")
        response = client.get(f"http://127.0.0.1:{gw.port}/_aigw/requests")

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert "x-request-id" not in response.headers
        chat, models = response.json()
        assert (chat["method"], chat["path"], chat["json"]) == (
            "POST",
            "/v1/chat/completions",
            CHAT,
        )
        assert chat["headers"]["x-ai-request-id"] == "inspect-1"
        assert chat["headers"]["x-tag"] == "a, b"
        assert all(name == name.lower() for name in chat["headers"])
        assert (models["method"], models["path"], models["json"]) == (
            "GET",
            "/v1/models?limit=2",
            None,
        )
        assert len(gw.requests) == 2  # inspecting is not recorded


def test_inspection_endpoint_delete_forgets_recorded_requests_but_not_queued_responses() -> None:
    with FakeGateway() as gw, httpx.Client(timeout=2.0, trust_env=False) as client:
        inspect = f"http://127.0.0.1:{gw.port}/_aigw/requests"
        client.get(f"{gw.base_url}/models")
        gw.queue_response(503)

        deleted = client.delete(inspect)
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert client.get(inspect).json() == []
        assert gw.requests == []
        assert client.get(f"{gw.base_url}/models").status_code == 503
        assert client.get(f"{gw.base_url}/models").headers["x-request-id"] == "fgw-3"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/_aigw/requests", 405),
        ("PUT", "/_aigw/requests", 405),
        ("GET", "/_aigw/other", 404),
    ],
)
def test_inspection_endpoint_answers_other_calls_with_an_error_body(
    method: str, path: str, status: int
) -> None:
    with FakeGateway() as gw, httpx.Client(timeout=2.0, trust_env=False) as client:
        response = client.request(method, f"http://127.0.0.1:{gw.port}{path}", json={})

    assert response.status_code == status
    assert "/_aigw/requests" in response.json()["error"]["message"]
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD, DELETE"
    assert gw.requests == []


def raw_exchange(gw: FakeGateway, peer: tuple[str, int], request: bytes) -> bytes:
    """Hand the server a connection that appears to come from `peer`; return its answer."""
    ours, theirs = socket.socketpair()
    with ours:
        ours.settimeout(5.0)
        assert gw._server is not None
        gw._server.process_request(theirs, peer)
        ours.sendall(request)
        answer = b""
        while chunk := ours.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("peer", "status"),
    [
        (("192.0.2.10", 40000), b"403"),
        (("2001:db8::1", 40000), b"403"),
        (("::ffff:127.0.0.1", 40000), b"200"),
        (("::1", 40000), b"200"),
    ],
)
def test_inspection_endpoint_answers_loopback_clients_only(
    peer: tuple[str, int], status: bytes
) -> None:
    request = b"GET /_aigw/requests HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    with FakeGateway() as gw:
        answer = raw_exchange(gw, peer, request)

    assert answer.startswith(b"HTTP/1.1 " + status)
    if status == b"403":
        assert b"loopback clients only" in answer


def test_fake_gateway_fixture_provides_a_running_gateway(fake_gateway: FakeGateway) -> None:  # noqa: F811
    with client_for(fake_gateway) as client:
        assert client.get("/models").status_code == 200
    assert len(fake_gateway.requests) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="uses select() on a pipe and SIGTERM")
def test_command_line_prints_base_url_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "aigw_middleware.testing", "--port", "0"]
    with subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 5.0)
            assert ready, "the command line printed nothing"
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)

            response = httpx.get(f"{base_url}/models", timeout=2.0, trust_env=False)
            assert response.status_code == 200

            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=5.0)
            assert process.returncode == 0, stderr
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def test_connections_send_without_waiting_for_the_clients_acks() -> None:
    # Head and body are separate writes: with Nagle's algorithm on, the body of every answer
    # on a kept-alive connection waited for the client's delayed ACK of the head (about 40 ms).
    with FakeGateway() as gw, httpx.Client(base_url=gw.base_url, trust_env=False) as client:
        for _ in range(2):
            client.get("/models").raise_for_status()
        assert gw._server is not None
        with gw._server._connections_lock:
            connections = list(gw._server._connections)

        assert len(connections) == 1  # the one kept alive
        assert connections[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
