"""Outbound groups: one chat call (and one streamed answer) over an in-process mock transport.

The network is replaced by ``MockTransport`` so that the numbers are the client stack's own
cost. Every call runs with a correlation context bound, as inside a web request; ``check()``
proves that the correlation variants send its request ID, tenant and team, and that every
variant parses the answer.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from aigw_middleware import GatewayClient, GatewayConfig, bind_context
from aigw_middleware.transport import CorrelationTransport
from bench.measure import Skipped, Variant, VariantFactory

BASE_URL = "http://gateway.bench/v1"
REQUEST_ID = "bench-request-1"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
ANSWER = "Hello! How can I help you today?"
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ANSWER, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
}
COMPLETION_BODY = json.dumps(COMPLETION).encode()
STREAM_CHUNKS = {"outbound_stream": 50, "outbound_stream_long": 2000}


def _sse_events(count: int) -> list[bytes]:
    """A streamed answer of ``count`` content chunks, one network chunk per event."""
    events = []
    for index in range(count):
        chunk = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": f"w{index} "},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    final = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def _expected_text(count: int) -> str:
    return "".join(f"w{index} " for index in range(count))


class Gateway:
    """The mock gateway's handler; remembers the last request's headers for the checks."""

    def __init__(self, http: Any, events: list[bytes] | None = None) -> None:
        self.http = http
        self.events = events
        self.last_headers: Any = None

    def __call__(self, request: Any) -> Any:
        self.last_headers = request.headers
        if self.events is None:
            return self.http.Response(
                200, headers={"content-type": "application/json"}, content=COMPLETION_BODY
            )
        return self.http.Response(
            200, headers={"content-type": "text/event-stream"}, content=iter(self.events)
        )

    def transport(self) -> Any:
        return self.http.MockTransport(self)

    def assert_sent(self, request_id: str) -> None:
        headers = self.last_headers
        assert headers is not None, "the gateway received nothing"
        sent = (
            headers.get("x-ai-request-id"),
            headers.get("x-ai-tenant"),
            headers.get("x-ai-team"),
        )
        assert sent == (request_id, "acme", "ml"), f"the gateway received {sent!r}"


def _config() -> GatewayConfig:
    return GatewayConfig(base_url=BASE_URL, api_key="bench-key", max_retries=2)


def _bound(run: Callable[[int], None]) -> Callable[[int], None]:
    def bound_run(n: int) -> None:
        with bind_context(request_id=REQUEST_ID, tenant="acme", team="ml"):
            run(n)

    return bound_run


def _variant(
    call: Callable[[], str],
    gateway: Gateway,
    *,
    sends: bool,
    expected: str,
    close: Callable[[], None],
    note: str = "",
) -> Variant:
    def run(n: int) -> None:
        for _ in range(n):
            call()

    def check() -> None:
        request_id = f"bench-check-{id(gateway)}"
        with bind_context(request_id=request_id, tenant="acme", team="ml"):
            text = call()
        assert text == expected, f"the call answered {text[:60]!r}"
        if sends:
            gateway.assert_sent(request_id)

    return Variant(run=_bound(run), check=check, close=close, note=note)


# ---------------------------------------------------------------------------------------------
# One chat call


def _raw_httpx(transport: Any) -> httpx.Client:
    return httpx.Client(transport=transport, base_url=BASE_URL, trust_env=False)


def _raw_call(client: httpx.Client) -> Callable[[], str]:
    headers = {"Authorization": "Bearer bench-key"}

    def call() -> str:
        response = client.post(
            "/chat/completions", json={"model": MODEL, "messages": MESSAGES}, headers=headers
        )
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])

    return call


def _openai_http() -> Any:
    """The HTTP package the installed OpenAI SDK builds on: httpx (2.x) or httpx2 (3.x)."""
    import openai

    if issubclass(openai.DefaultHttpxClient, httpx.Client):
        return httpx
    return importlib.import_module("httpx2")


@contextmanager
def _aigw_logging() -> Iterator[None]:
    """The README's logging set-up: the aigw_middleware logger at INFO through CorrelationFilter."""
    from aigw_middleware.log import CorrelationFilter

    logger = logging.getLogger("aigw_middleware")
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"
        )
    )
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _outbound(name: str) -> VariantFactory:
    def make() -> Variant | Skipped:
        if name in ("baseline", "transport", "aigw", "aigw_logging"):
            gateway = Gateway(httpx)
        else:
            if importlib.util.find_spec("openai") is None:
                return Skipped("openai is not installed")
            gateway = Gateway(_openai_http())
        if name == "baseline":
            client = _raw_httpx(gateway.transport())
            return _variant(
                _raw_call(client), gateway, sends=False, expected=ANSWER, close=client.close
            )
        if name == "transport":
            client = _raw_httpx(CorrelationTransport(gateway.transport(), _config()))
            return _variant(
                _raw_call(client), gateway, sends=True, expected=ANSWER, close=client.close
            )
        if name in ("aigw", "aigw_logging"):
            aigw = GatewayClient(_config(), transport=gateway.transport())

            def call() -> str:
                return aigw.chat.completions.create(model=MODEL, messages=MESSAGES).content

            variant = _variant(call, gateway, sends=True, expected=ANSWER, close=aigw.close)
            if name == "aigw_logging":
                plain_run = variant.run

                def logged_run(n: int) -> None:
                    with _aigw_logging():
                        plain_run(n)

                variant.run = logged_run
                variant.note = (
                    "aigw_middleware logger at INFO with CorrelationFilter (README set-up)"
                )
            return variant
        import openai

        http = gateway.http
        if name == "openai_sdk":
            sdk: Any = openai.OpenAI(
                base_url=BASE_URL,
                api_key="bench-key",
                max_retries=2,
                http_client=openai.DefaultHttpxClient(transport=gateway.transport()),
            )
        else:
            from aigw_middleware.openai import OpenAI

            # The wrapper's own client, with the mock in place of the network under our transport.
            sdk = OpenAI(
                config=_config(),
                http_client=openai.DefaultHttpxClient(
                    transport=CorrelationTransport(gateway.transport(), _config())
                ),
            )
        del http

        def sdk_call() -> str:
            completion = sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
            return str(completion.choices[0].message.content)

        return _variant(
            sdk_call,
            gateway,
            sends=name == "aigw_openai",
            expected=ANSWER,
            close=sdk.close,
            note=f"openai {openai.__version__}",
        )

    return make


# ---------------------------------------------------------------------------------------------
# A streamed answer


def _stream(name: str, chunks: int) -> VariantFactory:
    def make() -> Variant | Skipped:
        expected = _expected_text(chunks)
        events = _sse_events(chunks)
        if name == "openai_sdk":
            if importlib.util.find_spec("openai") is None:
                return Skipped("openai is not installed")
            import openai

            gateway = Gateway(_openai_http(), events)
            sdk = openai.OpenAI(
                base_url=BASE_URL,
                api_key="bench-key",
                max_retries=2,
                http_client=openai.DefaultHttpxClient(transport=gateway.transport()),
            )

            def sdk_call() -> str:
                parts = []
                for chunk in sdk.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True
                ):
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                return "".join(parts)

            return _variant(sdk_call, gateway, sends=False, expected=expected, close=sdk.close)
        gateway = Gateway(httpx, events)
        if name == "baseline":
            client = _raw_httpx(gateway.transport())
            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            headers = {"Authorization": "Bearer bench-key"}

            def raw_call() -> str:
                parts = []
                with client.stream(
                    "POST", "/chat/completions", json=body, headers=headers
                ) as response:
                    response.raise_for_status()
                    for line in response.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line[6:]
                        if data == "[DONE]":
                            break
                        delta = json.loads(data)["choices"][0]["delta"]
                        if delta.get("content"):
                            parts.append(delta["content"])
                return "".join(parts)

            return _variant(raw_call, gateway, sends=False, expected=expected, close=client.close)
        aigw = GatewayClient(_config(), transport=gateway.transport())

        def aigw_call() -> str:
            parts = []
            with aigw.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True
            ) as stream:
                for chunk in stream:
                    if chunk.delta:
                        parts.append(chunk.delta)
            return "".join(parts)

        return _variant(aigw_call, gateway, sends=True, expected=expected, close=aigw.close)

    return make


def groups(*, long_stream: bool = True) -> dict[str, dict[str, VariantFactory]]:
    """The outbound groups and their variants, in table order."""
    result: dict[str, dict[str, VariantFactory]] = {
        "outbound": {
            name: _outbound(name)
            for name in (
                "baseline",
                "transport",
                "aigw",
                "aigw_logging",
                "openai_sdk",
                "aigw_openai",
            )
        }
    }
    for group, chunks in STREAM_CHUNKS.items():
        if group == "outbound_stream_long" and not long_stream:
            continue
        result[group] = {name: _stream(name, chunks) for name in ("baseline", "aigw", "openai_sdk")}
    return result


def openai3_group() -> dict[str, VariantFactory]:
    """The OpenAI SDK 3.x variants, measured in a venv of their own (.venv-openai3)."""
    return {name: _outbound(name) for name in ("baseline", "openai_sdk", "aigw_openai")}
