"""AIGatewayMiddleware: the request's correlation context, bound while Django handles it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import cast

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.http import FileResponse, HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase, ResponseHeaders

from ..context import (
    AsyncBoundIterator,
    BoundIterator,
    CorrelationContext,
    _bound_to,
    _current,
)
from ..inbound import InboundPolicy
from .conf import _conf

__all__ = ["AIGatewayMiddleware", "request_context"]

_APP = "aigw_middleware.django"
_GetResponse = Callable[[HttpRequest], "HttpResponseBase | Awaitable[HttpResponseBase]"]


class AIGatewayMiddleware:
    """Binds the request's ID, tenant and team for every gateway call made while handling it.

    The context is set once per request and reset with its token in the same frame; it stays
    bound while inner middleware, the view and the error handlers run, and around each step
    of a streamed body. The values are also on ``request.correlation``. Every response that
    passes through carries the request ID (``X-AI-Request-Id``) unless ``ECHO_REQUEST_ID`` is
    false. Place it after ``AuthenticationMiddleware`` when the tenant resolver reads
    ``request.user``.
    """

    sync_capable = True
    """Django may run it in a sync stack (WSGI)."""
    async_capable = True
    """Django may run it in an async stack (ASGI) without a thread hop."""

    def __new__(cls, get_response: _GetResponse) -> AIGatewayMiddleware:
        if cls is AIGatewayMiddleware and iscoroutinefunction(get_response):
            # In an async stack Django calls __acall__ directly: no sync frame per request.
            cls = _AsyncAIGatewayMiddleware
        return super().__new__(cls)

    def __init__(self, get_response: _GetResponse) -> None:
        self.get_response = get_response
        """The rest of the middleware chain and the view."""
        self.async_mode = iscoroutinefunction(self.get_response)
        """True when Django runs this instance in an async stack."""
        if self.async_mode:
            markcoroutinefunction(self)
        # Without the app, settings.AIGW would be silently unused by get_client() and unchecked.
        if not apps.is_installed(_APP):
            raise ImproperlyConfigured(
                "AIGatewayMiddleware is in MIDDLEWARE but its app is not installed, so "
                "get_client() would not use settings.AIGW and manage.py check would not check "
                f'it: add "{_APP}" to INSTALLED_APPS.'
            )
        # Invalid settings fail here, when Django loads the middleware, not at the first request.
        _conf.loaded()

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        # The cached settings without a method call; loaded() builds them after a change.
        _, policy, headers_only, echo = _conf._loaded or _conf.loaded()
        if headers_only:
            # The usual case in line: only headers decide (META look-ups, see _context_for).
            context = policy.context_from(request.META, None, None, policy.environ_keys)
            request.correlation = context  # type: ignore[attr-defined]
        else:
            context = _context_for(request, policy)
        token = _current.set(context)
        try:
            response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        finally:
            _current.reset(token)
        return _finish(response, context, echo)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        _, policy, headers_only, echo = _conf._loaded or _conf.loaded()
        if headers_only:
            context = policy.context_from(request.META, None, None, policy.environ_keys)
            request.correlation = context  # type: ignore[attr-defined]
        elif policy.resolver is None:
            context = _context_for(request, policy)
        elif policy.resolver_is_async:
            # An async resolver runs on the event loop: no thread hop.
            context = await _acontext_for(request, policy)
        else:
            # A sync resolver may read request.user, whose lazy database lookup is sync-only.
            context = await sync_to_async(_context_for)(request, policy)
        token = _current.set(context)
        try:
            response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        finally:
            _current.reset(token)
        # _finish's usual case in line: under ASGI the call is 0.8k instructions a request, of
        # the 25k the benchmark allows the middleware.
        headers = response.headers
        if (
            echo is not None
            and type(headers) is _PLAIN_HEADERS
            and not isinstance(response, StreamingHttpResponse)
        ):
            headers._store[echo[0]] = (echo[1], context.request_id)
            return response
        return _finish(response, context, echo)


class _AsyncAIGatewayMiddleware(AIGatewayMiddleware):
    """:class:`AIGatewayMiddleware` as Django's async stack builds it: calling it is
    :meth:`~AIGatewayMiddleware.__acall__`."""

    __call__ = AIGatewayMiddleware.__acall__


def request_context(request: HttpRequest) -> CorrelationContext:
    """The correlation context :class:`AIGatewayMiddleware` made for ``request`` (typed access to
    ``request.correlation``); ``LookupError`` when the middleware has not seen the request."""
    context = getattr(request, "correlation", None)
    if not isinstance(context, CorrelationContext):
        raise LookupError("AIGatewayMiddleware has not handled this request; add it to MIDDLEWARE")
    return context


def _context_for(request: HttpRequest, policy: InboundPolicy) -> CorrelationContext:
    if policy.resolver_is_async:
        # Sync mode (WSGI) with an async resolver: run it as Django runs async middleware there.
        return async_to_sync(_acontext_for)(request, policy)
    # META look-ups: request.headers would build a headers object from all of META.
    meta = request.META
    peer = (meta.get("REMOTE_ADDR") or None) if policy.trusted_networks else None
    context = policy.context_from(meta, peer, request, policy.environ_keys)
    request.correlation = context  # type: ignore[attr-defined]
    return context


async def _acontext_for(request: HttpRequest, policy: InboundPolicy) -> CorrelationContext:
    meta = request.META
    context = await policy.acontext_for(
        meta.get, meta.get("REMOTE_ADDR") or None, request, policy.environ_keys
    )
    request.correlation = context  # type: ignore[attr-defined]
    return context


def _finish(
    response: HttpResponseBase, context: CorrelationContext, echo: tuple[str, str] | None
) -> HttpResponseBase:
    if echo is not None:
        headers = response.headers
        if type(headers) is _PLAIN_HEADERS:
            # ResponseHeaders.__setitem__ checks the charset and newlines of name and value (5k
            # instructions); the name is a checked token and the ID checked ASCII already.
            headers._store[echo[0]] = (echo[1], context.request_id)
        else:
            headers[echo[1]] = context.request_id
    # A FileResponse never calls the gateway, and wrapping it would lose wsgi.file_wrapper.
    if isinstance(response, StreamingHttpResponse) and not isinstance(response, FileResponse):
        _bind_body(response, context)
    return response


def _plain_headers() -> type[ResponseHeaders] | None:
    """ResponseHeaders when it keeps ``{lower-case name: (name, value)}`` in ``_store`` as
    Django 4.2 to 6.x do (checked once here), else None: headers are then set through it."""
    headers = ResponseHeaders({})
    headers["X-Probe"] = "value"
    if getattr(headers, "_store", None) == {"x-probe": ("X-Probe", "value")}:
        return ResponseHeaders
    return None


_PLAIN_HEADERS = _plain_headers()


def _bind_body(response: StreamingHttpResponse, context: CorrelationContext) -> None:
    """Bind ``context`` around each step of a streamed body and around its cleanup."""
    if response.is_async:
        # streaming_content is a new wrapper on each read that never closes the view's iterator;
        # wrap the view's own, so that its cleanup runs bound when the body is closed or dropped.
        view_iterator = getattr(response, "_iterator", None) or response.streaming_content
        response.streaming_content = AsyncBoundIterator(
            cast(AsyncIterator[bytes], view_iterator), context
        )
        return
    content = response.streaming_content
    response.streaming_content = BoundIterator(cast(Iterator[bytes], content), context)
    # The server's close() (also when the client went away mid-stream) closes the view's
    # iterator, which Django registered when the view built the response: run it bound.
    close = response.close

    def close_bound() -> None:
        with _bound_to(context):
            close()

    response.close = close_bound  # type: ignore[method-assign]
