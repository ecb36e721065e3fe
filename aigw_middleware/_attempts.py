"""One logical call to the gateway: its attempts, retry decisions and errors.

:class:`Attempts` holds every decision; :func:`send` and :func:`asend` are the same loop, once
with blocking I/O and once with ``await``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ._httpx import timeout_for
from ._results import gateway_request_id, provider_request_id
from .config import GatewayConfig, _missing_base_url
from .context import CorrelationContext, _new_request_id, _safe_context, current_context
from .errors import (
    GatewayConnectionError,
    GatewayTimeoutError,
    _classify,
    _is_budget_error,
    _parse_error_body,
)
from .profiles import _get_profile
from .retry import _decide
from .transport import _ATTEMPT_EXTENSION, _CONTEXT_EXTENSION


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
        self.context = current_context() or CorrelationContext(_new_request_id())
        self.attempt = 0
        # Body fields go only with calls under base_url, as the correlation headers do.
        profile = _get_profile(config.header_profile, config.profile_options)
        if profile.body and not absolute and isinstance(spec.json, Mapping):
            spec = replace(spec, json=profile.body_fields(spec.json, _safe_context(self.context)))
        self.spec = spec
        self._url = spec.path if absolute else spec.path.lstrip("/")

    def next_request(self) -> httpx.Request:
        self.attempt += 1
        spec = self.spec
        return self.http.build_request(
            spec.method,
            self._url,
            json=spec.json,
            content=spec.content,
            params=spec.params,
            headers=spec.headers,
            timeout=(
                timeout_for(spec.timeout) if spec.timeout is not None else httpx.USE_CLIENT_DEFAULT
            ),
            extensions={_CONTEXT_EXTENSION: self.context, _ATTEMPT_EXTENSION: self.attempt},
        )

    def done(self, response: httpx.Response) -> bool:
        """True when ``response`` (headers received) is the call's answer, before its body."""
        return response.is_success and self.spec.stream

    def rejected(self, response: httpx.Response) -> float:
        """An error response (body already read): the delay before retrying, or raise."""
        body = _parse_error_body(response.content, response.reason_phrase)
        budget = _is_budget_error(response.status_code, body)
        decision = _decide(
            status=response.status_code,
            headers=response.headers,
            retries_done=self.attempt - 1,
            max_retries=self.config.max_retries,
            budget=budget,
        )
        if decision.retry:
            return decision.delay
        note = decision.reason if decision.reason.startswith("Retry-After") else ""
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
        decision = _decide(
            status=None,
            headers=None,
            retries_done=self.attempt - 1,
            max_retries=self.config.max_retries,
        )
        if decision.retry:
            return decision.delay
        raise connection_error(exc, self.context, self.attempt) from exc


def send(
    http: httpx.Client, config: GatewayConfig, spec: RequestSpec
) -> tuple[httpx.Response, CorrelationContext]:
    """Run one logical call; the response is read, or open for streaming when ``spec.stream``."""
    call = Attempts(http, config, spec)
    while True:
        request = call.next_request()
        try:
            response = http.send(request, stream=True)
            if call.done(response):
                return response, call.context
            try:
                response.read()
            finally:
                response.close()
            if response.is_success:
                return response, call.context
            delay = call.rejected(response)
        except httpx.TransportError as exc:
            delay = call.failed(exc)
        time.sleep(delay)


async def asend(
    http: httpx.AsyncClient, config: GatewayConfig, spec: RequestSpec
) -> tuple[httpx.Response, CorrelationContext]:
    """The async :func:`send`."""
    call = Attempts(http, config, spec)
    while True:
        request = call.next_request()
        try:
            response = await http.send(request, stream=True)
            if call.done(response):
                return response, call.context
            try:
                await response.aread()
            finally:
                await response.aclose()
            if response.is_success:
                return response, call.context
            delay = call.rejected(response)
        except httpx.TransportError as exc:
            delay = call.failed(exc)
        await asyncio.sleep(delay)


def connection_error(
    exc: httpx.TransportError, context: CorrelationContext, attempts: int
) -> GatewayConnectionError:
    """The library's exception for an httpx transport failure."""
    kind = (
        GatewayTimeoutError if isinstance(exc, httpx.TimeoutException) else GatewayConnectionError
    )
    target = ""
    try:
        url = exc.request.url
        target = f"{url.host}{f':{url.port}' if url.port else ''}{url.path}"
    except RuntimeError:
        pass
    detail = str(exc) or type(exc).__name__
    return kind(
        f"{type(exc).__name__}: {detail}",
        request_id=context.request_id,
        attempts=attempts,
        target=target,
    )
