"""One logical call to the gateway: its attempts, deadlines, retry decisions and errors.

:class:`Attempts` holds every decision; :func:`send` and :func:`asend` are the same loop, once
with blocking I/O and once with ``await``.

What is retried is what is safe to send twice: a failure before the request went out (no
connection, no pooled connection free), or any failure of a request that carries an
``Idempotency-Key`` (sent once per call on every method but GET, HEAD and OPTIONS, the same on
each retry, as the OpenAI SDK does) or whose method is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx

from . import _otel
from ._httpx import attempt_timeout, deadline_bound, deadline_var, without_credentials
from ._results import gateway_request_id, provider_request_id
from ._rules import _new_request_id
from .config import GatewayConfig, _missing_base_url
from .context import CorrelationContext, current_context
from .errors import (
    ErrorBody,
    GatewayConnectionError,
    GatewayTimeoutError,
    InvalidRequestError,
    MalformedResponseError,
    _classify,
    _is_budget_error,
    _parse_error_body,
)
from .retry import _decide
from .transport import (
    _ATTEMPT_EXTENSION,
    _CONTEXT_EXTENSION,
    _checked_context,
    _profile_of,
    _target_of,
    _targets_for,
)

IDEMPOTENCY_KEY = "Idempotency-Key"
#: Methods that are safe to repeat by definition; every other call gets an idempotency key.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Failures that happen before any byte of the request went out.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
_FORBIDDEN_IN_HEADERS = frozenset("\r\n\0")


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What one logical call sends: the same on every attempt."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    timeout: float | None = None
    stream: bool = False


class DeadlineExceeded(httpx.TimeoutException):
    """An attempt (or the whole call) ran past its wall-clock deadline."""


class Attempts:
    """The retry state of one logical call; :func:`send` and :func:`asend` only do the I/O."""

    def __init__(
        self, http: httpx.Client | httpx.AsyncClient, config: GatewayConfig, spec: RequestSpec
    ) -> None:
        absolute = spec.path.startswith(("http://", "https://"))
        if config.base_url is None and not absolute:
            raise _missing_base_url()
        self.http = http
        self.config = config
        # What goes on the wire is what results and errors report: an invalid bound value is
        # replaced here, once for the call, rather than per hop by the transport.
        self.context = _checked_context(current_context() or CorrelationContext(_new_request_id()))
        self.attempt = 0
        # Body fields go only with calls under base_url, as the correlation headers do.
        profile = _profile_of(config)
        if profile.body and not absolute and isinstance(spec.json, Mapping):
            spec = replace(spec, json=profile.body_fields(spec.json, self.context))
        self.spec = spec
        self.started = time.monotonic()
        total = config.call_deadline
        self.call_deadline = math.inf if total is None else self.started + total
        self.deadline = self.call_deadline  # of the attempt under way
        self._url = spec.path if absolute else spec.path.lstrip("/")
        self.span: _otel.CallSpan | None = None
        self._headers = self._checked_headers(spec)
        self.idempotent = (
            spec.method.upper() in _IDEMPOTENT_METHODS or IDEMPOTENCY_KEY in self._headers
        )

    def _checked_headers(self, spec: RequestSpec) -> httpx.Headers | dict[str, str]:
        key = f"aigw-retry-{_new_request_id()}"
        if not spec.headers:  # nothing to check: no httpx.Headers to build
            return {} if spec.method.upper() in _IDEMPOTENT_METHODS else {IDEMPOTENCY_KEY: key}
        headers = httpx.Headers()
        for name, value in spec.headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise self.invalid(f"header {name!r}: names and values must be strings")
            if _FORBIDDEN_IN_HEADERS.intersection(name) or _FORBIDDEN_IN_HEADERS.intersection(
                value
            ):
                shown = name.encode("unicode_escape").decode()[:64]
                raise self.invalid(f"header {shown!r} contains CR, LF or NUL")
            headers[name] = value
        given = headers.get(IDEMPOTENCY_KEY)
        if given == "":
            del headers[IDEMPOTENCY_KEY]  # the caller asked for none
        elif given is None and spec.method.upper() not in _IDEMPOTENT_METHODS:
            headers[IDEMPOTENCY_KEY] = key
        return headers

    def trace(self) -> None:
        """Start the call's span (when OpenTelemetry records): current until :meth:`untrace`."""
        spec = self.spec
        self.span = _otel.start_call(self.config, spec.method, spec.path, spec.json, self.context)

    def untrace(self, response: httpx.Response | None, error: BaseException | None) -> None:
        """The call returned ``response`` or raised ``error``: record it; the span of a stream
        lives on in the response, to end with the stream."""
        span = self.span
        if span is None:
            return
        _otel.detach(span)
        if error is not None:
            _otel.failed(span, error, self.attempt)
        elif response is not None and self.spec.stream and response.is_success:
            _otel.streaming(span, response, self.attempt)
        elif response is not None:
            _otel.answered(span, response, self.attempt)

    def invalid(self, reason: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"{reason} (request_id={self.context.request_id}, nothing was sent)",
            request_id=self.context.request_id,
            attempts=max(self.attempt, 1),
        )

    def next_request(self) -> httpx.Request:
        if self.http.is_closed:
            # httpx would raise a bare RuntimeError; a call on a client another task closed
            # fails like any other call that could not reach the gateway.
            raise GatewayConnectionError(
                "the client was closed before this call was sent",
                request_id=self.context.request_id,
                attempts=max(self.attempt, 1),
            )
        self.attempt += 1
        now = time.monotonic()
        self.deadline = min(now + self.config.attempt_deadline, self.call_deadline)
        spec = self.spec
        seconds = spec.timeout if spec.timeout is not None else self.config.timeout
        request = self.http.build_request(
            spec.method,
            self._url,
            json=spec.json,
            content=spec.content,
            params=spec.params,
            headers=self._headers,
            timeout=attempt_timeout(min(seconds, max(self.deadline - now, 0.001))),
            extensions={_CONTEXT_EXTENSION: self.context, _ATTEMPT_EXTENSION: self.attempt},
        )
        if request.url.userinfo:
            # httpx sends a URL's user and password as basic auth, but would also log and
            # report the URL with them: they go as the header alone.
            url, auth = without_credentials(str(request.url))
            request.url = httpx.URL(url)
            next(auth.auth_flow(request))
        if self.attempt == 1 and not _targets_for(self.config).match(request.url):
            raise self.invalid(
                f"{request.url.copy_with(query=None, fragment=None, username=None, password=None)}"
                " is outside base_url and propagate_to: only the gateway is called"
            )
        return request

    def remaining(self) -> float:
        """Seconds left for the attempt under way."""
        return self.deadline - time.monotonic()

    def received(self, response: httpx.Response) -> bool:
        """Headers are in: bind the body to the deadline (async: only a stream's, as
        :func:`_attempt` reads the others); True when ``response`` is the call's answer (a
        stream), to be returned before its body is read."""
        answer = response.is_success and self.spec.stream
        if isinstance(response.stream, httpx.AsyncByteStream):
            if answer:
                response.stream = _AsyncDeadlineStream(response.stream, self, response.request)
        elif isinstance(response.stream, httpx.SyncByteStream):
            response.stream = _DeadlineStream(response.stream, self, response.request)
        return answer

    def exceeded(self, request: httpx.Request) -> DeadlineExceeded:
        return DeadlineExceeded(self._passed(), request=request)

    def _passed(self) -> str:
        which = "call" if self.deadline >= self.call_deadline else "attempt"
        seconds = self.config.call_deadline if which == "call" else self.config.attempt_deadline
        return f"the {which} deadline of {seconds:g}s passed"

    def bound(self) -> contextlib.AbstractContextManager[None]:
        """The sync clients' blocking I/O in this block ends at the attempt's deadline."""
        return deadline_bound(self.deadline, self._passed)

    def unreadable(self, response: httpx.Response, exc: httpx.DecodingError) -> float:
        """A body that does not decode: an error status is judged by its status alone."""
        if not response.is_success:
            return self.rejected(response, ErrorBody(f"{response.reason_phrase} (body unreadable)"))
        raise MalformedResponseError(
            response.status_code,
            ErrorBody(f"the gateway's answer does not decode ({exc})"),
            request_id=self.context.request_id,
            gateway_request_id=gateway_request_id(response),
            provider_request_id=provider_request_id(response),
            attempts=self.attempt,
        ) from exc

    def rejected(self, response: httpx.Response, body: ErrorBody | None = None) -> float:
        """An error response (body already read): the delay before retrying, or raise."""
        if body is None:
            body = _parse_error_body(response.content, response.reason_phrase)
        budget = _is_budget_error(response.status_code, body)
        decision = _decide(
            status=response.status_code,
            headers=response.headers,
            retries_done=self.attempt - 1,
            max_retries=self.config.max_retries,
            budget=budget,
        )
        note = decision.reason if decision.reason.startswith("Retry-After") else ""
        if decision.retry:
            if self._fits(decision.delay):
                _otel.retrying(self.span, self.attempt, decision.delay, str(response.status_code))
                return decision.delay
            note = f"the call deadline of {self.config.call_deadline:g}s leaves no time to retry"
        raise _classify(response.status_code, body)(
            response.status_code,
            body,
            request_id=self.context.request_id,
            gateway_request_id=gateway_request_id(response),
            provider_request_id=provider_request_id(response),
            retry_after=decision.retry_after,
            attempts=self.attempt,
            note=note,
        )

    def failed(self, exc: httpx.TransportError) -> float:
        """A transport failure: the delay before retrying, or raise."""
        if isinstance(exc, httpx.LocalProtocolError):
            raise self.invalid(f"the HTTP stack refused the request: {exc}") from exc
        if self.idempotent or isinstance(exc, _NOT_SENT):
            decision = _decide(
                status=None,
                headers=None,
                retries_done=self.attempt - 1,
                max_retries=self.config.max_retries,
            )
            if decision.retry and self._fits(decision.delay):
                _otel.retrying(self.span, self.attempt, decision.delay, type(exc).__name__)
                return decision.delay
        raise connection_error(exc, self.context, self.attempt) from exc

    def _fits(self, delay: float) -> bool:
        """True when a retry after ``delay`` seconds starts before the call deadline."""
        return time.monotonic() + delay < self.call_deadline


class _DeadlineStream(httpx.SyncByteStream):
    """A body that ends with a timeout once the attempt's deadline passes: each blocking read of
    the client's own transport waits at most until it (:data:`~aigw_middleware._httpx.deadline_var`),
    and with any other transport the deadline is checked as each piece arrives."""

    def __init__(self, inner: httpx.SyncByteStream, call: Attempts, request: httpx.Request):
        self._inner = inner
        self._call = call
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        chunks, call = iter(self._inner), self._call
        bound = (call.deadline, call._passed)  # deadline_bound in line: cheaper for each read
        while True:
            token = deadline_var.set(bound)
            try:
                chunk = next(chunks, None)
            finally:
                deadline_var.reset(token)
            if chunk is None:
                return
            if time.monotonic() >= bound[0]:
                raise call.exceeded(self._request)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _AsyncDeadlineStream(httpx.AsyncByteStream):
    """The async :class:`_DeadlineStream`, exact: a read still waiting at the deadline is
    cancelled."""

    def __init__(self, inner: httpx.AsyncByteStream, call: Attempts, request: httpx.Request):
        self._inner = inner
        self._call = call
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            try:
                with anyio.fail_after(max(self._call.remaining(), 0.0)):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise self._call.exceeded(self._request) from None
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def send(
    http: httpx.Client, config: GatewayConfig, spec: RequestSpec
) -> tuple[httpx.Response, CorrelationContext, int]:
    """Run one logical call; the response is read, or open for streaming when ``spec.stream``.

    Returns the response, the context it was sent with, and the number of attempts.
    """
    call = Attempts(http, config, spec)
    call.trace()
    answer: httpx.Response | None = None
    error: BaseException | None = None
    try:
        while True:
            request = call.next_request()
            try:
                with call.bound():
                    response = http.send(request, stream=True)
                if call.received(response):
                    answer = response
                    return response, call.context, call.attempt
                try:
                    response.read()
                except httpx.DecodingError as exc:
                    delay = call.unreadable(response, exc)
                else:
                    if response.is_success:
                        answer = response
                        return response, call.context, call.attempt
                    delay = call.rejected(response)
                finally:
                    response.close()
            except httpx.TransportError as exc:
                delay = call.failed(exc)
            time.sleep(delay)
    except BaseException as exc:
        error = exc
        raise
    finally:
        call.untrace(answer, error)


async def asend(
    http: httpx.AsyncClient, config: GatewayConfig, spec: RequestSpec
) -> tuple[httpx.Response, CorrelationContext, int]:
    """The async :func:`send`; its deadlines are exact, since a pending read can be cancelled."""
    call = Attempts(http, config, spec)
    call.trace()
    answer: httpx.Response | None = None
    error: BaseException | None = None
    try:
        while True:
            request = call.next_request()
            try:
                outcome = await _attempt(http, call, request)
            except httpx.TransportError as exc:
                delay = call.failed(exc)
            else:
                if isinstance(outcome, httpx.Response):
                    answer = outcome
                    return outcome, call.context, call.attempt
                delay = outcome
            await asyncio.sleep(delay)
    except BaseException as exc:
        error = exc
        raise
    finally:
        call.untrace(answer, error)


async def _attempt(
    http: httpx.AsyncClient, call: Attempts, request: httpx.Request
) -> httpx.Response | float:
    """One attempt of :func:`asend`: the call's answer, or the seconds to wait before the next.

    One cancel scope covers the send and the read of a body that is not returned as a stream
    (a scope per read cost about 35k instructions each)."""
    try:
        with anyio.fail_after(max(call.remaining(), 0.0)):
            response = await http.send(request, stream=True)
            if call.received(response):
                return response
            try:
                await response.aread()
            except httpx.DecodingError as exc:
                return call.unreadable(response, exc)
            else:
                return response if response.is_success else call.rejected(response)
            finally:
                await response.aclose()
    except TimeoutError:
        raise call.exceeded(request) from None


def connection_error(
    exc: httpx.TransportError, context: CorrelationContext, attempts: int
) -> GatewayConnectionError:
    """The library's exception for an httpx transport failure."""
    kind = (
        GatewayTimeoutError if isinstance(exc, httpx.TimeoutException) else GatewayConnectionError
    )
    target = ""
    with contextlib.suppress(RuntimeError):  # an error raised before a request was made
        target = _target_of(exc.request.url)
    detail = str(exc) or type(exc).__name__
    return kind(
        f"{type(exc).__name__}: {detail}",
        request_id=context.request_id,
        attempts=attempts,
        target=target,
    )
