"""The demo's views: each calls the gateway and reports the request ID it saw.

``/chat`` is a plain view, ``/stream`` a plain generator (it runs after Flask has torn the
request down), ``/stream-ctx`` a generator under ``stream_with_context`` (it may read
``request``), ``/async`` an async view. Add ``?tenant=acme`` or ``?tenant=globex`` to any of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from aigw_middleware import current_context, get_async_client, get_client

__all__ = ["views"]

MODEL = "gpt-4o-mini"
views = Blueprint("demo", __name__)
logger = logging.getLogger(__name__)


def correlation() -> dict[str, Any]:
    """The request ID, tenant and team bound where this is called."""
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


def question() -> list[dict[str, str]]:
    return [{"role": "user", "content": request.args.get("q", "Say hello")}]


@views.get("/")
def index() -> Response:
    return jsonify(
        {
            **correlation(),
            "endpoints": ["/chat", "/stream", "/stream-ctx", "/async"],
            "try": "/chat?q=hello&tenant=acme",
        }
    )


@views.get("/chat")
def chat() -> Response:
    answer = get_client().chat.completions.create(model=MODEL, messages=question())
    logger.info("gateway answered %s", answer.gateway_request_id)
    return jsonify(
        {
            **correlation(),
            "answer": answer.content,
            "gateway_request_id": answer.gateway_request_id,
        }
    )


def ndjson_answer(messages: list[dict[str, str]]) -> Iterator[str]:
    """Newline-delimited JSON: who is asking, each delta, then the whole answer."""
    yield json.dumps({"event": "start", **correlation()}) + "\n"
    parts: list[str] = []
    finished = False
    try:
        stream = get_client().chat.completions.create(model=MODEL, messages=messages, stream=True)
        with stream:
            for chunk in stream:
                parts.append(chunk.delta)
                yield json.dumps({"delta": chunk.delta}) + "\n"
        yield json.dumps({"event": "end", **correlation(), "answer": "".join(parts)}) + "\n"
        finished = True
    finally:
        if not finished:
            logger.info("stream closed before the end: the client went away")


@views.get("/stream")
def stream() -> Response:
    # Read the request now: this generator runs after Flask has torn the request down.
    return Response(ndjson_answer(question()), mimetype="application/x-ndjson")


@views.get("/stream-ctx")
def stream_ctx() -> Response:
    def body() -> Iterator[str]:
        yield from ndjson_answer(question())  # request is readable here, within the stream

    return Response(stream_with_context(body()), mimetype="application/x-ndjson")


@views.get("/async")
async def async_chat() -> Response:
    answer = await get_async_client().chat.completions.create(model=MODEL, messages=question())
    return jsonify(
        {
            **correlation(),
            "answer": answer.content,
            "gateway_request_id": answer.gateway_request_id,
        }
    )
