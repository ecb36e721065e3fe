"""OpenTelemetry: a CLIENT span per gateway call, trace context to the gateway only, trace IDs in
the context and the logs, and one trace from a Django, Flask or FastAPI request to the gateway.

Runs with the OpenTelemetry SDK and an in-memory exporter; each test gets its own tracer
provider.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aigw_middleware import (
    AsyncGatewayClient,
    ConfigurationError,
    GatewayClient,
    GatewayConfig,
    RateLimitError,
    bind_context,
    current_context,
)
from aigw_middleware.inbound import InboundPolicy
from aigw_middleware.log import CorrelationFilter, structlog_processor
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import CorrelationTransport

from .conftest import reset_tracer_provider

HELLO = [{"role": "user", "content": "a secret prompt"}]


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    return trace.get_tracer("tests")


def ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.instrumentation_scope.name == "aigw_middleware"
    ]  # type: ignore[union-attr]


def traceparent_ids(value: str) -> tuple[int, int]:
    """(trace ID, parent span ID) of a ``traceparent`` header."""
    _version, trace_id, span_id, _flags = value.split("-")
    return int(trace_id, 16), int(span_id, 16)


# ---------------------------------------------------------------------------------------------
# The span of a gateway call


def test_a_chat_call_is_one_client_span_with_the_genai_and_correlation_attributes(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    with (
        GatewayClient(gateway_config) as client,
        bind_context(request_id="req-otel-1", tenant="acme", team="ml"),
    ):
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)

    (span,) = ours(exporter)
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    gateway = httpx.URL(fake_gateway.base_url)
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.response.id": answer.raw["id"],
        "gen_ai.usage.input_tokens": answer.raw["usage"]["prompt_tokens"],
        "gen_ai.usage.output_tokens": answer.raw["usage"]["completion_tokens"],
        "server.address": gateway.host,
        "server.port": gateway.port,
        "aigw.request_id": "req-otel-1",
        "aigw.tenant": "acme",
        "aigw.team": "ml",
        "aigw.gateway_request_id": answer.gateway_request_id,
        "aigw.attempts": 1,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_the_session_is_the_conversation_id_and_the_user_an_attribute(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    with GatewayClient(gateway_config) as client, bind_context(user="u-1", session="s-1"):
        client.chat.completions.create(model="m", messages=HELLO)
    (span,) = ours(exporter)
    assert span.attributes is not None
    assert (span.attributes["gen_ai.conversation.id"], span.attributes["aigw.user"]) == (
        "s-1",
        "u-1",
    )


def test_no_prompt_or_completion_content_is_on_the_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    with GatewayClient(gateway_config) as client:
        answer = client.chat.completions.create(model="m", messages=HELLO)
    (span,) = ours(exporter)
    values = " ".join(str(v) for v in (span.attributes or {}).values())
    events = " ".join(str(dict(e.attributes or {})) for e in span.events)
    for text in ("secret prompt", answer.content):
        assert text not in values + events


def test_the_gateway_receives_traceparent_of_the_call_span_inside_the_callers_trace(
    tracer: trace.Tracer,
    exporter: InMemorySpanExporter,
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
) -> None:
    with GatewayClient(gateway_config) as client, tracer.start_as_current_span("view") as view:
        client.chat.completions.create(model="m", messages=HELLO)
    (span,) = ours(exporter)
    assert span.parent is not None
    assert span.parent.span_id == view.get_span_context().span_id
    sent = fake_gateway.requests[0].headers["traceparent"]
    assert traceparent_ids(sent) == (view.get_span_context().trace_id, span.context.span_id)


def test_retries_are_events_and_a_failure_sets_error_type(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_response(429, headers={"Retry-After": "0"}, times=3)
    with GatewayClient(gateway_config) as client, pytest.raises(RateLimitError):
        client.chat.completions.create(model="m", messages=HELLO)
    (span,) = ours(exporter)
    assert [(e.name, dict(e.attributes or {})["aigw.attempt"]) for e in span.events] == [
        ("aigw.retry", 1),
        ("aigw.retry", 2),
    ]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["aigw.cause"] == "429"
    assert span.attributes is not None
    assert (span.attributes["error.type"], span.attributes["aigw.attempts"]) == (
        "RateLimitError",
        3,
    )
    assert span.status.status_code is StatusCode.ERROR
    # Each attempt carried the same call span as parent.
    parents = {traceparent_ids(r.headers["traceparent"])[1] for r in fake_gateway.requests}
    assert parents == {span.context.span_id}


async def test_an_async_call_has_its_span_too(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    async with AsyncGatewayClient(gateway_config) as client:
        await client.embeddings.create(model="emb", input=["a", "b"])
    (span,) = ours(exporter)
    assert span.name == "embeddings emb"
    assert span.attributes is not None
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    sent = fake_gateway.requests[0].headers["traceparent"]
    assert traceparent_ids(sent)[1] == span.context.span_id


def test_a_streamed_call_span_ends_after_the_last_chunk_with_usage(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    with GatewayClient(gateway_config) as client:
        stream = client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            assert ours(exporter) == [], "the span ended before the stream did"
    (span,) = ours(exporter)
    usage = chunks[-1].usage
    assert usage is not None
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert span.attributes["gen_ai.response.id"] == chunks[0].raw["id"]


async def test_an_async_streamed_call_span_ends_after_the_last_chunk_with_usage(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    async with AsyncGatewayClient(gateway_config) as client:
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            assert ours(exporter) == [], "the span ended before the stream did"
    (span,) = ours(exporter)
    usage = chunks[-1].usage
    assert usage is not None
    assert span.attributes is not None
    assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert span.attributes["aigw.attempts"] == 1


async def test_an_async_stream_closed_early_ends_its_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    async with AsyncGatewayClient(gateway_config) as client:
        stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)
        async with stream:
            async for _chunk in stream:
                break
            assert ours(exporter) == []
    (span,) = ours(exporter)
    assert span.name == "chat m"
    assert span.end_time is not None


def test_otel_spans_false_makes_no_span_but_the_trace_still_reaches_the_gateway(
    tracer: trace.Tracer,
    exporter: InMemorySpanExporter,
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
) -> None:
    config = gateway_config.replace(otel_spans=False)
    with GatewayClient(config) as client, tracer.start_as_current_span("view") as view:
        client.chat.completions.create(model="m", messages=HELLO)
    assert ours(exporter) == []
    sent = fake_gateway.requests[0].headers["traceparent"]
    context = view.get_span_context()
    assert traceparent_ids(sent) == (context.trace_id, context.span_id)


def test_without_a_tracer_provider_there_is_no_span_and_no_trace_header(
    gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    reset_tracer_provider()
    with GatewayClient(gateway_config) as client:
        client.chat.completions.create(model="m", messages=HELLO)
        client.chat.completions.create(model="m", messages=HELLO, stream=True).close()
    assert all("traceparent" not in r.headers for r in fake_gateway.requests)


# ---------------------------------------------------------------------------------------------
# Trace context to the gateway only


@pytest.fixture
def elsewhere() -> Iterator[FakeGateway]:
    """Another host: not the gateway."""
    with FakeGateway() as other:
        yield other


@pytest.fixture
def httpx_instrumented(exporter: InMemorySpanExporter) -> Iterator[None]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    yield
    HTTPXClientInstrumentor().uninstrument()


def wrapped_client(config: GatewayConfig) -> httpx.Client:
    return httpx.Client(transport=CorrelationTransport(httpx.HTTPTransport(), config))


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "httpx-instrumented"])
def test_a_wrapped_client_sends_trace_context_to_the_gateway_and_none_elsewhere(
    request: pytest.FixtureRequest,
    tracer: trace.Tracer,
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    elsewhere: FakeGateway,
    instrumented: bool,
) -> None:
    if instrumented:
        request.getfixturevalue("httpx_instrumented")
    config = gateway_config.replace(otel_baggage=True)
    with wrapped_client(config) as client, tracer.start_as_current_span("view") as view:
        client.get(f"{fake_gateway.base_url}/models")
        client.get(
            f"{elsewhere.base_url}/models",
            headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        )
    (to_gateway,) = fake_gateway.requests
    (to_elsewhere,) = elsewhere.requests
    assert traceparent_ids(to_gateway.headers["traceparent"])[0] == view.get_span_context().trace_id
    assert "aigw.request_id=" in to_gateway.headers["baggage"]
    assert not {"traceparent", "tracestate", "baggage"}.intersection(to_elsewhere.headers)


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "httpx-instrumented"])
def test_a_redirect_to_another_host_loses_the_trace_context_and_a_hop_back_gets_it_again(
    request: pytest.FixtureRequest,
    tracer: trace.Tracer,
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
    elsewhere: FakeGateway,
    instrumented: bool,
) -> None:
    if instrumented:
        request.getfixturevalue("httpx_instrumented")
    fake_gateway.queue_response(302, headers={"Location": f"{elsewhere.base_url}/hop"})
    elsewhere.queue_response(302, headers={"Location": f"{fake_gateway.base_url}/models"})
    config = gateway_config.replace(otel_baggage=True)
    transport = CorrelationTransport(httpx.HTTPTransport(), config)
    with (
        httpx.Client(transport=transport, follow_redirects=True, timeout=5) as client,
        tracer.start_as_current_span("view") as view,
    ):
        assert client.get(f"{fake_gateway.base_url}/models").status_code == 200
    first, back = fake_gateway.requests
    (hop,) = elsewhere.requests
    trace_id = view.get_span_context().trace_id
    for to_gateway in (first, back):
        assert traceparent_ids(to_gateway.headers["traceparent"])[0] == trace_id
        assert "aigw.request_id=" in to_gateway.headers["baggage"]
    assert not {"traceparent", "tracestate", "baggage"}.intersection(hop.headers)


def test_with_the_httpx_instrumentation_the_gateway_gets_one_traceparent_from_its_http_span(
    exporter: InMemorySpanExporter,
    httpx_instrumented: None,
    gateway_config: GatewayConfig,
    fake_gateway: FakeGateway,
) -> None:
    with GatewayClient(gateway_config) as client:
        client.chat.completions.create(model="m", messages=HELLO)
    call = ours(exporter)[0]
    (http_span,) = [s for s in exporter.get_finished_spans() if s is not call]
    assert http_span.parent is not None
    assert http_span.parent.span_id == call.context.span_id
    sent = fake_gateway.requests[0].headers["traceparent"]
    assert "," not in sent  # one value, not two joined
    assert traceparent_ids(sent) == (call.context.trace_id, http_span.context.span_id)


def test_otel_gateway_only_false_leaves_other_hosts_to_the_instrumentation(
    httpx_instrumented: None,
    tracer: trace.Tracer,
    gateway_config: GatewayConfig,
    elsewhere: FakeGateway,
) -> None:
    config = gateway_config.replace(otel_gateway_only=False)
    with wrapped_client(config) as client, tracer.start_as_current_span("view"):
        client.get(f"{elsewhere.base_url}/models")
    assert "traceparent" in elsewhere.requests[0].headers


def test_a_traceparent_set_on_the_call_wins(
    tracer: trace.Tracer, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    mine = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    with wrapped_client(gateway_config) as client, tracer.start_as_current_span("view"):
        client.get(f"{fake_gateway.base_url}/models", headers={"traceparent": mine})
    assert fake_gateway.requests[0].headers["traceparent"] == mine


def test_baggage_is_off_by_default_and_never_global(
    tracer: trace.Tracer, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from opentelemetry import baggage

    with GatewayClient(gateway_config) as client, bind_context(tenant="acme"):
        with tracer.start_as_current_span("view"):
            client.chat.completions.create(model="m", messages=HELLO)
        with GatewayClient(gateway_config.replace(otel_baggage=True)) as with_baggage:
            with_baggage.chat.completions.create(model="m", messages=HELLO)
        assert baggage.get_all() == {}
    assert "baggage" not in fake_gateway.requests[0].headers
    assert "aigw.tenant=acme" in fake_gateway.requests[1].headers["baggage"]


def test_a_failing_api_key_resolver_leaves_no_baggage_attached(
    tracer: trace.Tracer, gateway_config: GatewayConfig
) -> None:
    from opentelemetry import baggage

    def broken(context: Any) -> str:
        raise RuntimeError("no key store")

    config = gateway_config.replace(otel_baggage=True, api_key_resolver=broken, max_retries=0)
    with GatewayClient(config) as client, tracer.start_as_current_span("view"):
        with pytest.raises(ConfigurationError):
            client.chat.completions.create(model="m", messages=HELLO)
        assert baggage.get_all() == {}


# ---------------------------------------------------------------------------------------------
# Request IDs from the trace, trace IDs in the context and in logs


def policy(**config: Any) -> InboundPolicy:
    return InboundPolicy.from_config(GatewayConfig.from_env({}, **config))


def test_request_id_source_trace_takes_the_trace_id_when_no_valid_id_came_in(
    tracer: trace.Tracer,
) -> None:
    headers = {"X-Request-Id": "from-the-edge"}
    with tracer.start_as_current_span("server") as server:
        trace_id = format(server.get_span_context().trace_id, "032x")
        from_trace = policy(request_id_source="trace").context_for(lambda n: None, None)
        from_header = policy(request_id_source="trace").context_for(headers.get, None)
        default = policy().context_for(lambda n: None, None)
    assert (from_trace.request_id, from_trace.trace_id) == (trace_id, trace_id)
    assert (from_header.request_id, from_header.trace_id) == ("from-the-edge", trace_id)
    assert default.request_id != trace_id
    assert default.trace_id == trace_id


def test_without_a_span_the_trace_source_generates_an_id() -> None:
    context = policy(request_id_source="trace").context_for(lambda n: None, None)
    assert len(context.request_id) == 32
    assert context.trace_id is None


def test_log_records_and_structlog_events_get_the_active_span_ids(tracer: trace.Tracer) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with tracer.start_as_current_span("work") as span:
        CorrelationFilter().filter(record)
        event = structlog_processor(None, "info", {})
    CorrelationFilter().filter(outside)
    ids = (
        format(span.get_span_context().trace_id, "032x"),
        format(span.get_span_context().span_id, "016x"),
    )
    assert (record.trace_id, record.span_id) == ids  # type: ignore[attr-defined]
    assert (event["trace_id"], event["span_id"]) == ids
    assert (outside.trace_id, outside.span_id) == ("-", "-")  # type: ignore[attr-defined]
    assert "trace_id" not in structlog_processor(None, "info", {})


# ---------------------------------------------------------------------------------------------
# One trace from the web request to the gateway


def assert_one_trace(exporter: InMemorySpanExporter, gateway: FakeGateway) -> None:
    """The server span is the parent of the call span; the gateway got the same trace."""
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    (call,) = ours(exporter)
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    sent = gateway.requests[0].headers["traceparent"]
    assert traceparent_ids(sent) == (server.context.trace_id, call.context.span_id)


def test_django_view_one_trace(
    exporter: InMemorySpanExporter, settings: Any, fake_gateway: FakeGateway, client: Any
) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    settings.AIGW = {"BASE_URL": fake_gateway.base_url, "REQUEST_ID_SOURCE": "trace"}
    DjangoInstrumentor().instrument()
    try:
        response = client.get("/plain/")
    finally:
        DjangoInstrumentor().uninstrument()
    assert response.status_code == 200
    assert_one_trace(exporter, fake_gateway)
    (server,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert response.json()["request_id"] == format(server.context.trace_id, "032x")


def test_flask_view_one_trace(exporter: InMemorySpanExporter, fake_gateway: FakeGateway) -> None:
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from aigw_middleware import get_client
    from aigw_middleware.flask import AIGateway

    app = Flask(__name__)
    app.config.update(AIGW_BASE_URL=fake_gateway.base_url)

    @app.get("/chat")
    def chat() -> str:
        return get_client().chat.completions.create(model="m", messages=HELLO).content

    AIGateway(app)
    FlaskInstrumentor().instrument_app(app)
    try:
        assert app.test_client().get("/chat").status_code == 200
    finally:
        FlaskInstrumentor().uninstrument_app(app)
    assert_one_trace(exporter, fake_gateway)


async def test_fastapi_endpoint_one_trace(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from aigw_middleware import get_async_client
    from aigw_middleware.asgi import AIGatewayMiddleware

    api = FastAPI()
    api.add_middleware(AIGatewayMiddleware, config=gateway_config)

    @api.get("/ask")
    async def ask() -> dict[str, Any]:
        await get_async_client().chat.completions.create(model="m", messages=HELLO)
        context = current_context()
        assert context is not None
        return {"trace_id": context.trace_id}

    FastAPIInstrumentor.instrument_app(api)
    try:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/ask")
    finally:
        FastAPIInstrumentor.uninstrument_app(api)
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.kind is SpanKind.SERVER]
    assert response.json()["trace_id"] == format(server.context.trace_id, "032x")
    assert_one_trace(exporter, fake_gateway)


# ---------------------------------------------------------------------------------------------
# The OpenAI SDK clients


def sdk_span_attributes(
    gateway: FakeGateway, response: Any, *, answer: Any, attempts: int = 1
) -> dict[str, Any]:
    """What the span of an SDK chat call bound to ``req-sdk`` / acme / ml records."""
    url = httpx.URL(gateway.base_url)
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": answer.model,
        "gen_ai.response.id": answer.id,
        "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": answer.usage.completion_tokens,
        "gen_ai.conversation.id": "conv-1",
        "server.address": url.host,
        "server.port": url.port,
        "aigw.request_id": "req-sdk",
        "aigw.tenant": "acme",
        "aigw.team": "ml",
        "aigw.user": "u-1",
        "aigw.gateway_request_id": response.headers["x-request-id"],
        "aigw.attempts": attempts,
    }


SDK_CONTEXT = {"request_id": "req-sdk", "tenant": "acme", "team": "ml", "user": "u-1"}
SDK_CONTEXT["session"] = "conv-1"


def test_an_openai_sdk_call_has_one_span_with_every_attribute(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from aigw_middleware.openai import OpenAI

    client = OpenAI(config=gateway_config)
    with bind_context(**SDK_CONTEXT):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)  # type: ignore[arg-type]
    client.close()
    (span,) = ours(exporter)
    assert (span.name, span.kind) == ("chat gpt-4o-mini", SpanKind.CLIENT)
    answer = raw.parse()
    assert dict(span.attributes or {}) == sdk_span_attributes(fake_gateway, raw, answer=answer)
    sent = fake_gateway.requests[0].headers["traceparent"]
    assert traceparent_ids(sent)[1] == span.context.span_id


async def test_an_async_openai_sdk_call_has_the_same_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from aigw_middleware.openai import AsyncOpenAI

    client = AsyncOpenAI(config=gateway_config)
    with bind_context(**SDK_CONTEXT):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=HELLO,  # type: ignore[arg-type]
        )
    await client.close()
    (span,) = ours(exporter)
    answer = raw.parse()
    assert dict(span.attributes or {}) == sdk_span_attributes(fake_gateway, raw, answer=answer)


def test_an_openai_sdk_stream_span_ends_after_the_last_chunk_with_every_attribute(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from aigw_middleware.openai import OpenAI

    client = OpenAI(config=gateway_config)
    with bind_context(**SDK_CONTEXT):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        assert ours(exporter) == [], "the span ended before the stream did"
    client.close()
    (span,) = ours(exporter)
    assert dict(span.attributes or {}) == sdk_span_attributes(
        fake_gateway, stream.response, answer=chunks[-1]
    )
    assert span.attributes is not None
    assert span.attributes["gen_ai.response.id"] == chunks[0].id


async def test_an_async_openai_sdk_stream_span_ends_after_the_last_chunk_with_every_attribute(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from aigw_middleware.openai import AsyncOpenAI

    client = AsyncOpenAI(config=gateway_config)
    with bind_context(**SDK_CONTEXT):
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        assert ours(exporter) == [], "the span ended before the stream did"
    await client.close()
    (span,) = ours(exporter)
    assert dict(span.attributes or {}) == sdk_span_attributes(
        fake_gateway, stream.response, answer=chunks[-1]
    )


def test_an_openai_sdk_stream_closed_early_ends_its_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    from aigw_middleware.openai import OpenAI

    client = OpenAI(config=gateway_config)
    with client.chat.completions.create(model="m", messages=HELLO, stream=True) as stream:  # type: ignore[arg-type]
        next(iter(stream))
        assert ours(exporter) == []
    (span,) = ours(exporter)
    assert span.attributes is not None
    assert (span.name, span.attributes["aigw.attempts"]) == ("chat m", 1)
    client.close()


async def test_an_async_openai_stream_closed_early_ends_its_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    from aigw_middleware.openai import AsyncOpenAI

    client = AsyncOpenAI(config=gateway_config)
    stream = await client.chat.completions.create(model="m", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert ours(exporter) == []
    await stream.close()
    (span,) = ours(exporter)
    assert span.name == "chat m"
    await client.close()


# The SDK retries by itself: a 1 ms Retry-After keeps its backoff out of the test's time.
RETRY_SOON = {"retry-after-ms": "1"}


def test_the_sdks_retries_are_counted_and_are_events_on_its_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from aigw_middleware.openai import OpenAI

    fake_gateway.queue_response(503, headers=RETRY_SOON)
    fake_gateway.queue_response(drop=True)
    client = OpenAI(config=gateway_config)
    client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    client.close()
    (span,) = ours(exporter)
    assert span.attributes is not None
    assert span.attributes["aigw.attempts"] == 3
    events = [dict(e.attributes or {}) for e in span.events]
    assert [(e["aigw.attempt"], e["aigw.cause"]) for e in events] == [
        (1, "503"),
        (2, "RemoteProtocolError"),
    ]
    assert all(isinstance(e["aigw.retry_delay_s"], float) for e in events)
    assert span.status.status_code is StatusCode.UNSET


async def test_a_failed_async_openai_sdk_call_sets_error_type_and_attempts(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    import openai

    from aigw_middleware.openai import AsyncOpenAI

    fake_gateway.queue_response(429, headers=RETRY_SOON, times=2)
    client = AsyncOpenAI(config=gateway_config.replace(max_retries=1))
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    await client.close()
    (span,) = ours(exporter)
    assert span.attributes is not None
    assert (span.attributes["error.type"], span.attributes["aigw.attempts"]) == (
        "RateLimitError",
        2,
    )
    assert [dict(e.attributes or {})["aigw.cause"] for e in span.events] == ["429"]
    assert span.status.status_code is StatusCode.ERROR


def test_with_the_official_openai_instrumentation_there_is_no_second_span(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig, fake_gateway: FakeGateway
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    from aigw_middleware.openai import OpenAI

    OpenAIInstrumentor().instrument()
    try:
        client = OpenAI(config=gateway_config)
        client.chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
        client.close()
    finally:
        OpenAIInstrumentor().uninstrument()
    assert ours(exporter) == []
    (theirs,) = exporter.get_finished_spans()
    assert theirs.kind is SpanKind.CLIENT
    sent = fake_gateway.requests[0].headers["traceparent"]
    assert traceparent_ids(sent) == (theirs.context.trace_id, theirs.context.span_id)


async def test_with_the_official_openai_instrumentation_an_async_call_has_its_span_only(
    exporter: InMemorySpanExporter, gateway_config: GatewayConfig
) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    from aigw_middleware.openai import AsyncOpenAI

    OpenAIInstrumentor().instrument()
    try:
        client = AsyncOpenAI(config=gateway_config)
        await client.embeddings.create(model="emb", input=["a"])
        # A call the instrumentation does not trace keeps the span of this package.
        await client.models.list()
        await client.close()
    finally:
        OpenAIInstrumentor().uninstrument()
    assert [s.name for s in ours(exporter)] == ["GET"]
    (theirs,) = [s for s in exporter.get_finished_spans() if s not in ours(exporter)]
    assert theirs.attributes is not None
    assert theirs.attributes["gen_ai.operation.name"] == "embeddings"
