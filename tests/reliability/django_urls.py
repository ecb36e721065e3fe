"""Django views for the reliability checks: each reports what it saw and calls the gateway.

Served with ``ROOT_URLCONF = "tests.reliability.django_urls"``; the calls go to the
:data:`~tests.reliability.recording.GATEWAY`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

from aigw_middleware import current_context

from .recording import GATEWAY, MESSAGES


def seen() -> dict[str, str | None]:
    context = current_context()
    assert context is not None, "no correlation context bound in the view"
    return {"request_id": context.request_id, "tenant": context.tenant, "team": context.team}


def plain(request: HttpRequest) -> JsonResponse:
    GATEWAY.chat()
    return JsonResponse(seen())


async def plain_async(request: HttpRequest) -> JsonResponse:
    async with GATEWAY.async_client() as client:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    return JsonResponse(seen())


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        with GATEWAY.chat(stream=True) as chunks:
            for chunk in chunks:
                yield chunk.delta.encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        async with GATEWAY.async_client() as client:
            chunks = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async with chunks:
                async for chunk in chunks:
                    yield chunk.delta.encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


def seen_only(request: HttpRequest) -> JsonResponse:
    """No gateway call: what the view saw."""
    return JsonResponse(seen())


def seen_streamed(request: HttpRequest) -> StreamingHttpResponse:
    """No gateway call: the request ID bound at each step of a streamed body."""

    def body() -> Iterator[bytes]:
        for _ in range(3):
            context = current_context()
            yield f"{context.request_id if context else '-'}\n".encode()

    return StreamingHttpResponse(body(), content_type="text/plain")


urlpatterns = [
    path("seen/", seen_only),
    path("seen-stream/", seen_streamed),
    path("plain/", plain),
    path("plain-async/", plain_async),
    path("stream/", stream),
    path("stream-async/", stream_async),
]
