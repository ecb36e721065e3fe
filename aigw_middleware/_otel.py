"""OpenTelemetry, when it is there: the gateway call's span, trace context to the gateway only,
and the trace's IDs for logs and request IDs.

``opentelemetry-api`` is optional (extra ``aigw-middleware[otel]``) and imported on first use.
Without it, or without a tracer provider set by an SDK, each hook costs one check and does
nothing. Spans carry no prompt or completion content: only model names, IDs, token counts and
the correlation fields.
"""

from __future__ import annotations

import functools
import json
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx

from ._version import __version__
from .config import GatewayConfig
from .context import CorrelationContext

#: The response extension that hands a streamed call's span to its stream.
SPAN_EXTENSION = "aigw.span"
#: The request extension naming the trace headers this transport added on an earlier hop.
_TRACE_INJECTED_EXTENSION = "aigw.trace_injected"
#: W3C trace context and baggage: what never goes to a host that is not a target.
TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})

#: GenAI operation names (``gen_ai.operation.name``) by the last segments of the path.
_OPERATIONS = (
    ("chat/completions", "chat"),
    ("embeddings", "embeddings"),
    ("completions", "text_completion"),
)
#: The operations whose SDK calls the official OpenAI instrumentation makes a span for.
_OPENAI_INSTRUMENTED = frozenset({"chat", "embeddings"})


@dataclass(frozen=True, slots=True)
class _Api:
    trace: ModuleType
    context: ModuleType
    propagate: ModuleType
    baggage: ModuleType
    no_providers: tuple[type, ...]
    suppress_http_key: str
    baggage_propagator: Any
    current_context: Any


@functools.cache
def _api() -> _Api | None:
    """The OpenTelemetry API, or None when it is not installed (looked up once)."""
    try:
        from opentelemetry import baggage, context, propagate, trace
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
    except ImportError:
        return None
    return _Api(
        trace=trace,
        context=context,
        propagate=propagate,
        baggage=baggage,
        no_providers=(trace.ProxyTracerProvider, trace.NoOpTracerProvider),
        # The key the instrumentations read to stay out of a request (opentelemetry.context).
        suppress_http_key=getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", ""),
        baggage_propagator=W3CBaggagePropagator(),
        current_context=_context_getter(context),
    )


def _context_getter(context: ModuleType) -> Any:
    """The cheapest way to read OpenTelemetry's current context: the ContextVar's own ``get``
    when the runtime context is the default contextvars one, else ``context.get_current``."""
    variable = getattr(getattr(context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return variable.get if isinstance(variable, ContextVar) else context.get_current


# ---------------------------------------------------------------------------------------------
# Trace IDs for request IDs and logs


def current_ids() -> tuple[str, str] | None:
    """The active span's trace and span ID in hex (as OpenTelemetry's logging writes them)."""
    api = _api()
    if api is None:
        return None
    current = api.current_context()
    if not current:  # an empty context, as without an SDK: no span to read
        return None
    span_context = api.trace.get_current_span(current).get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


def context_getter() -> Any:
    """OpenTelemetry's current-context getter (an empty context, as without an SDK, is falsy),
    or None when OpenTelemetry is not installed."""
    api = _api()
    return None if api is None else api.current_context


def current_trace_id() -> str | None:
    """The active trace's ID in hex, or None."""
    api = _api()
    if api is None or not api.current_context():  # per request: the common case first
        return None
    ids = current_ids()
    return None if ids is None else ids[0]


# ---------------------------------------------------------------------------------------------
# Trace context on the wire (transport.py)


def prepare_hop(
    request: httpx.Request,
    config: GatewayConfig,
    context: CorrelationContext,
    target: bool,
) -> object | None:
    """Apply the trace-context rule to one hop; return a token for :func:`end_hop`, or None.

    To a target: the active trace context (``traceparent``, ``tracestate``, by the global
    propagator) and, with ``otel_baggage``, W3C ``baggage`` with the correlation fields; a
    trace header the caller set on the call wins. Elsewhere, with ``otel_gateway_only``: no
    trace header, and the HTTP instrumentations are kept out of the hop so they add none.
    """
    injected: frozenset[str] = request.extensions.get(_TRACE_INJECTED_EXTENSION, frozenset())
    if target and not injected and not config.otel_baggage:
        api = _api()
        if api is None or not api.current_context():
            return None  # an empty context, as without an SDK: no span, nothing to strip
    headers = request.headers
    if not target:
        if config.otel_gateway_only:
            for key in TRACE_HEADERS.intersection(headers.keys()):
                del headers[key]
            request.extensions[_TRACE_INJECTED_EXTENSION] = frozenset()
            api = _api()
            if api is not None and api.suppress_http_key:
                token: object = api.context.attach(
                    api.context.set_value(api.suppress_http_key, True)
                )
                return token
        return None
    api = _api()
    if api is None:
        return None
    for key in injected:
        headers.pop(key, None)
    otel_context = api.context.get_current()
    tracing = api.trace.get_current_span(otel_context).get_span_context().is_valid
    if not tracing and not config.otel_baggage:  # nothing to send: no span, no baggage
        request.extensions[_TRACE_INJECTED_EXTENSION] = frozenset()
        return None
    present = TRACE_HEADERS.intersection(headers.keys())
    if config.otel_baggage:
        for key, value in _baggage_fields(context):
            otel_context = api.baggage.set_baggage(key, value, otel_context)
    carrier: dict[str, str] = {}
    if tracing:
        api.propagate.inject(carrier, context=otel_context)
    if config.otel_baggage:
        api.baggage_propagator.inject(carrier, context=otel_context)
    present = TRACE_HEADERS.intersection(headers.keys()) if carrier else frozenset()
    added = set()
    for key, value in carrier.items():
        if key.lower() not in present:  # set explicitly on this call: it wins
            headers[key] = value
            added.add(key.lower())
    request.extensions[_TRACE_INJECTED_EXTENSION] = frozenset(added)
    if config.otel_baggage:
        # An httpx instrumentation under this transport injects again from the current
        # context: with the fields in it for this hop only, it sends the same baggage.
        attached: object = api.context.attach(otel_context)
        return attached
    return None


def end_hop(token: object | None) -> None:
    """Undo :func:`prepare_hop`'s attach, in the same frame."""
    if token is not None:
        api = _api()
        assert api is not None
        api.context.detach(token)


def _baggage_fields(context: CorrelationContext) -> list[tuple[str, str]]:
    fields = [("aigw.request_id", context.request_id)]
    for name in ("tenant", "team", "user", "session"):
        value = getattr(context, name, None)
        if value:
            fields.append((f"aigw.{name}", value))
    return fields


# ---------------------------------------------------------------------------------------------
# The span of one gateway call (_attempts.py, _streaming.py)


@dataclass(slots=True)
class CallSpan:
    """One gateway call's span: current while its attempts run, ended once."""

    span: Any
    token: object | None
    ended: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


def start_call(
    config: GatewayConfig,
    method: str,
    path: str,
    body: Any,
    context: CorrelationContext,
    *,
    sdk: bool = False,
) -> CallSpan | None:
    """Start the call's CLIENT span and make it current; None when there is nothing to record.

    Named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat gpt-4o-mini``) for GenAI
    operations, else after the HTTP method. For a call of the OpenAI SDK (``sdk``), None while
    the official OpenAI instrumentation traces the SDK: it makes the span.
    """
    if not config.otel_spans:
        return None
    api = _api()
    if api is None:
        return None
    provider = _tracer_provider(api)
    if provider is None:
        return None
    operation = _operation(path)
    if sdk and operation in _OPENAI_INSTRUMENTED and _openai_instrumented():
        return None
    model = body.get("model") if isinstance(body, dict) else None
    attributes: dict[str, Any] = {}
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
        name = operation
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model
            name = f"{operation} {model}"
    else:
        name = method.upper()
    if config.base_url is not None:
        url = httpx.URL(config.base_url)
        attributes["server.address"] = url.host
        attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    session = getattr(context, "session", None)
    if session:
        attributes["gen_ai.conversation.id"] = session
    attributes["aigw.request_id"] = context.request_id
    for label in ("tenant", "team", "user"):
        value = getattr(context, label, None)
        if value:
            attributes[f"aigw.{label}"] = value
    tracer = _tracer(provider)
    span = tracer.start_span(name, kind=api.trace.SpanKind.CLIENT, attributes=attributes)
    token = api.context.attach(api.trace.set_span_in_context(span))
    return CallSpan(span, token)


def _tracer_provider(api: _Api) -> Any:
    """The tracer provider an SDK set, or None while OpenTelemetry's own (which records
    nothing) is the one.

    ``get_tracer_provider()`` looks ``OTEL_PYTHON_TRACER_PROVIDER`` up in the environment on
    every call until a provider is set (about 9,000 instructions): while none is set, the
    variable is looked up once per process here, as OpenTelemetry reads it at start-up.
    """
    if api.trace.__dict__.get("_TRACER_PROVIDER", _UNKNOWN) is None and not _provider_in_env():
        return None
    provider = api.trace.get_tracer_provider()
    return None if isinstance(provider, api.no_providers) else provider


_UNKNOWN = object()


@functools.cache
def _provider_in_env() -> bool:
    return "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _openai_instrumented() -> bool:
    """True while ``opentelemetry-instrumentation-openai-v2`` instruments the OpenAI SDK."""
    instrumentor = _openai_instrumentor()
    return instrumentor is not None and bool(instrumentor.is_instrumented_by_opentelemetry)


@functools.cache
def _openai_instrumentor() -> Any:
    """The official OpenAI instrumentor (a singleton), or None when it is not installed: looked
    up once, as a failed import costs a search of ``sys.path`` on every call."""
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ImportError:
        return None
    return OpenAIInstrumentor()  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=4)
def _tracer(provider: Any) -> Any:
    return provider.get_tracer("aigw_middleware", __version__)


def _operation(path: str) -> str | None:
    path = httpx.URL(path).path.rstrip("/")
    for suffix, operation in _OPERATIONS:
        if path == suffix or path.endswith("/" + suffix):
            return operation
    return None


def detach(call: CallSpan | None) -> None:
    """The span stops being current (same frame as :func:`start_call`); it may live on."""
    if call is not None and call.token is not None:
        api = _api()
        assert api is not None
        api.context.detach(call.token)
        call.token = None


def retrying(call: CallSpan | None, attempt: int, delay: float, cause: str) -> None:
    """A retry is coming: one ``aigw.retry`` event on the span."""
    if call is not None:
        call.span.add_event(
            "aigw.retry",
            {"aigw.attempt": attempt, "aigw.retry_delay_s": round(delay, 3), "aigw.cause": cause},
        )


def answered(call: CallSpan | None, response: httpx.Response, attempts: int) -> None:
    """A read answer: its IDs, model and usage on the span, which ends."""
    if call is None:
        return
    received(call, response, attempts)
    _record_answer(call, response)
    finish(call)


def _record_answer(call: CallSpan, response: httpx.Response) -> None:
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        record_body(call, body)


def streaming(call: CallSpan | None, response: httpx.Response, attempts: int) -> None:
    """A stream is open: its span ends with the stream (:func:`finish` from ``_streaming``)."""
    if call is None:
        return
    received(call, response, attempts)
    response.extensions[SPAN_EXTENSION] = call


def received(call: CallSpan | None, response: httpx.Response, attempts: int | None = None) -> None:
    """The gateway answered: its request ID (and the attempts made, when counted here)."""
    if call is None:
        return
    from ._results import gateway_request_id

    if attempts is not None:
        call.attributes["aigw.attempts"] = attempts
    gateway_id = gateway_request_id(response)
    if gateway_id:
        call.attributes["aigw.gateway_request_id"] = gateway_id


def record_body(call: CallSpan, body: dict[str, Any]) -> None:
    """IDs, model and token counts from an answer or a streamed chunk; never its content."""
    if isinstance(body.get("id"), str):
        call.attributes["gen_ai.response.id"] = body["id"]
    if isinstance(body.get("model"), str):
        call.attributes["gen_ai.response.model"] = body["model"]
    usage = body.get("usage")
    if isinstance(usage, dict):
        for ours, theirs in (
            ("gen_ai.usage.input_tokens", "prompt_tokens"),
            ("gen_ai.usage.output_tokens", "completion_tokens"),
        ):
            if type(usage.get(theirs)) is int:
                call.attributes[ours] = usage[theirs]


def failed(call: CallSpan | None, exc: BaseException, attempts: int | None = None) -> None:
    """The call failed: ``error.type`` (the exception's class), status ERROR, and the end."""
    if call is None or call.ended:
        return
    api = _api()
    assert api is not None
    kind = type(exc).__qualname__
    call.attributes["error.type"] = kind
    if attempts is not None:
        call.attributes["aigw.attempts"] = attempts
    call.span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, kind))
    finish(call)


def finish(call: CallSpan | None) -> None:
    """End the span once, with the attributes gathered."""
    if call is None or call.ended:
        return
    call.ended = True
    call.span.set_attributes(call.attributes)
    call.span.end()


def stream_span(response: httpx.Response) -> CallSpan | None:
    """The span a streamed response carries, if any."""
    found = response.extensions.get(SPAN_EXTENSION)
    return found if isinstance(found, CallSpan) else None
