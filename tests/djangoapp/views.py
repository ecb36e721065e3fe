"""Views that call the gateway the way a project would: plain, async, streamed, failing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from aigw_middleware import current_context, get_async_client, get_client
from aigw_middleware.django import request_context

MESSAGES = [{"role": "user", "content": "hello there"}]


def seen(request: HttpRequest) -> dict[str, object]:
    """What the view sees: the bound context, request.correlation and request_context()."""
    context = current_context()
    assert context is not None, "no correlation context bound in the view"
    return {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "correlation": request.correlation.request_id,  # type: ignore[attr-defined]
        "typed": request_context(request).request_id,
    }


def step_line() -> bytes:
    """One line of a streamed body: the request ID bound while this step runs."""
    context = current_context()
    return f"{context.request_id if context else '-'}\n".encode()


def plain(request: HttpRequest) -> JsonResponse:
    answer = get_client().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return JsonResponse({**seen(request), "answer": answer.content})


async def plain_async(request: HttpRequest) -> JsonResponse:
    answer = await get_async_client().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    return JsonResponse({**seen(request), "answer": answer.content})


def no_gateway(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        yield step_line()
        with get_client().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as chunks:
            for chunk in chunks:
                if chunk.delta:
                    yield step_line()
        yield step_line()

    return StreamingHttpResponse(body(), content_type="text/plain")


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        yield step_line()
        chunks = await get_async_client().chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async with chunks:
            async for chunk in chunks:
                if chunk.delta:
                    yield step_line()
        yield step_line()

    return StreamingHttpResponse(body(), content_type="text/plain")


#: What the endless views' cleanup (the ``finally`` of their body) saw bound, in order.
cleanups: list[str | None] = []


def _cleanup_saw() -> None:
    context = current_context()
    cleanups.append(context.request_id if context else None)


def endless(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        try:
            for _ in range(1000):
                yield step_line()
        finally:
            _cleanup_saw()

    return StreamingHttpResponse(body(), content_type="text/plain")


async def endless_async(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            for _ in range(1000):
                yield step_line()
        finally:
            _cleanup_saw()

    return StreamingHttpResponse(body(), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed")


async def boom_async(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the async view failed")


def server_error(request: HttpRequest) -> JsonResponse:
    """handler500: reports the failure through the gateway, as an error handler might."""
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "summarise this error"}]
    )
    return JsonResponse({"error": "server error"}, status=500)
