"""Views that call the AI gateway with no correlation code of their own.

Every answer includes the request ID, tenant and team that the view saw; the gateway receives
the same values from the shared client.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse

from aigw_middleware import current_context, get_async_client, get_client

from .tenancy import DEMO_USERS, SESSION_KEY

logger = logging.getLogger("example_django")
MODEL = os.environ.get("EXAMPLE_MODEL", "gpt-4o-mini")


def seen() -> dict[str, Any]:
    """The correlation context bound right now."""
    context = current_context()
    if context is None:
        return dict.fromkeys(("request_id", "tenant", "team", "user", "session"))
    return {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "user": context.user,
        "session": context.session,
    }


def messages(request: HttpRequest) -> list[dict[str, str]]:
    return [{"role": "user", "content": request.GET.get("q") or "Say hello to the demo."}]


def line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


def index(request: HttpRequest) -> JsonResponse:
    """What this example offers."""
    return JsonResponse(
        {
            **seen(),
            "endpoints": {
                "/chat/?q=...": "one answer from the gateway (sync view)",
                "/chat-async/?q=...": "the same from an async view",
                "/stream/?q=...": "a streamed answer, one JSON line per step (sync)",
                "/stream-async/?q=...": "the same from an async view",
                "/login/?user=alice": f"act as a demo user: {', '.join(DEMO_USERS)}",
                "/logout/": "forget the demo user",
            },
        }
    )


def chat(request: HttpRequest) -> JsonResponse:
    answer = get_client().chat.completions.create(model=MODEL, messages=messages(request))
    logger.info("chat answered with %d characters", len(answer.content))
    return JsonResponse(
        {**seen(), "answer": answer.content, "gateway_request_id": answer.gateway_request_id}
    )


async def chat_async(request: HttpRequest) -> JsonResponse:
    answer = await get_async_client().chat.completions.create(
        model=MODEL, messages=messages(request)
    )
    logger.info("async chat answered with %d characters", len(answer.content))
    return JsonResponse(
        {**seen(), "answer": answer.content, "gateway_request_id": answer.gateway_request_id}
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Streams JSON lines: ``start``, one ``delta`` per chunk, then ``end`` with the text."""

    def body() -> Iterator[bytes]:
        yield line({"event": "start", **seen()})
        parts = []
        with get_client().chat.completions.create(
            model=MODEL, messages=messages(request), stream=True
        ) as chunks:
            for chunk in chunks:
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield line({"event": "delta", "delta": chunk.delta})
        logger.info("stream sent %d chunks", len(parts))
        yield line({"event": "end", **seen(), "text": "".join(parts)})

    return StreamingHttpResponse(body(), content_type="application/x-ndjson")


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    """The async :func:`stream`."""

    async def body() -> AsyncIterator[bytes]:
        yield line({"event": "start", **seen()})
        parts = []
        chunks = await get_async_client().chat.completions.create(
            model=MODEL, messages=messages(request), stream=True
        )
        async with chunks:
            async for chunk in chunks:
                if chunk.delta:
                    parts.append(chunk.delta)
                    yield line({"event": "delta", "delta": chunk.delta})
        logger.info("async stream sent %d chunks", len(parts))
        yield line({"event": "end", **seen(), "text": "".join(parts)})

    return StreamingHttpResponse(body(), content_type="application/x-ndjson")


def login(request: HttpRequest) -> JsonResponse:
    """Remember a demo user in the (signed-cookie) session. Demo only: no password."""
    name = request.GET.get("user", "")
    if name not in DEMO_USERS:
        return JsonResponse(
            {"error": f"unknown demo user; use one of {list(DEMO_USERS)}"}, status=400
        )
    request.session[SESSION_KEY] = name
    return JsonResponse({"name": name, **DEMO_USERS[name]})


def logout(request: HttpRequest) -> JsonResponse:
    request.session.flush()
    return JsonResponse({"user": None})
