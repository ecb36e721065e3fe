"""FakeGateway's answers: OpenAI-compatible bodies built from a request (and Anthropic-shaped
ones at ``/messages``), and error bodies."""

from __future__ import annotations

import hashlib
import json as jsonlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

_CREATED = 1_700_000_000
_REPLY_PREFIX = "Hello from FakeGateway: "
_MAX_ECHOED_CHARS = 200
_EMBEDDING_DIMENSIONS = 8
_DEFAULT_CHAT_MODEL = "gpt-4o-mini"
_DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
_MODEL_IDS = ("gpt-4o-mini", "openai/gpt-4o-mini", "text-embedding-3-small")
# The server frames every body itself; letting a queued header override these would
# desynchronise the connection instead of producing the intended response.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


@dataclass(frozen=True)
class Answer:
    """A response to send: a complete body, or SSE events streamed as HTTP chunks."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    events: tuple[bytes, ...] | None = None


@dataclass(frozen=True)
class QueuedResponse:
    """How to answer one request instead of (or on top of) the normal answer."""

    answer: Answer | None  # None: the normal answer for the path, with `headers` added
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False
    stream_cut_after: int | None = None
    fault: str | None = None  # what chose this answer, shown by the console


def merge_headers(
    defaults: Sequence[tuple[str, str]], overrides: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The defaults, less any header named in `overrides`, then `overrides` (framing excepted)."""
    overrides = [(n, v) for n, v in overrides if n.lower() not in _FRAMING_HEADERS]
    overridden = {name.lower() for name, _ in overrides}
    return [(n, v) for n, v in defaults if n.lower() not in overridden] + overrides


def parse_json(body: bytes) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    if not body:
        return None
    try:
        return jsonlib.loads(body)
    except ValueError:
        return None


def dump_json(value: Any) -> bytes:
    return jsonlib.dumps(value, separators=(",", ":")).encode()


def reason_phrase(status: int) -> str:
    """``"503 Service Unavailable"``, or the bare number for a status without a phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def error_type_for(status: int) -> str:
    """The OpenAI error type that goes with an HTTP error status."""
    if status >= 500:
        return "server_error"
    return {
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error")


def error_answer(status: int, message: str, error_type: str, code: str | None = None) -> Answer:
    """An OpenAI-style error body."""
    return Answer(
        status, dump_json({"error": {"message": message, "type": error_type, "code": code}})
    )


def _not_found(method: str, path: str) -> Answer:
    return error_answer(404, f"Unknown endpoint: {method} {path}", "not_found_error")


def _models_answer() -> Answer:
    models = [
        {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "fake-gateway"}
        for model_id in _MODEL_IDS
    ]
    return Answer(200, dump_json({"object": "list", "data": models}))


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


def _chat_answer(request: dict[str, Any], sequence: int) -> Answer:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return error_answer(400, "'messages' must be a list.", "invalid_request_error")
    model = request.get("model")
    if not isinstance(model, str):
        model = _DEFAULT_CHAT_MODEL
    content = _REPLY_PREFIX + _last_user_text(messages)[:_MAX_ECHOED_CHARS]
    prompt_tokens = sum(_word_count(_message_text(message)) for message in messages)
    completion_tokens = _word_count(content)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    completion_id = f"chatcmpl-fgw-{sequence}"
    if request.get("stream") is True:
        stream_options = request.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        usage_or_none = usage if include_usage is True else None
        events = _chat_stream_events(completion_id, model, content, usage_or_none)
        return Answer(200, content_type="text/event-stream", events=events)
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return Answer(200, dump_json(completion))


def _chat_stream_events(
    completion_id: str, model: str, content: str, usage: dict[str, int] | None
) -> tuple[bytes, ...]:
    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": choices,
        }

    def choice(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish_reason}

    # Each word keeps its trailing whitespace, so the deltas concatenate to `content`.
    words = re.findall(r"\S+\s*", content)
    chunks = [chunk([choice({"role": "assistant", "content": ""})])]
    chunks += [chunk([choice({"content": word})]) for word in words]
    chunks.append(chunk([choice({}, "stop")]))
    if usage is not None:
        chunks.append({**chunk([]), "usage": usage})
    return (*(b"data: " + dump_json(c) + b"\n\n" for c in chunks), b"data: [DONE]\n\n")


def _messages_answer(request: dict[str, Any], sequence: int) -> Answer:
    """An Anthropic Messages API answer (not streamed), for SDKs that speak that API."""
    messages = request.get("messages")
    if not isinstance(messages, list) or request.get("stream") is True:
        return error_answer(
            400,
            "'messages' must be a list; streaming is not offered here.",
            "invalid_request_error",
        )
    model = request.get("model")
    text = _REPLY_PREFIX + _last_user_text(messages)[:_MAX_ECHOED_CHARS]
    message = {
        "id": f"msg_fgw-{sequence}",
        "type": "message",
        "role": "assistant",
        "model": model if isinstance(model, str) else _DEFAULT_CHAT_MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": sum(_word_count(_message_text(m)) for m in messages),
            "output_tokens": _word_count(text),
        },
    }
    return Answer(200, dump_json(message))


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [
        round(int.from_bytes(digest[4 * i : 4 * i + 4], "big") / 2**31 - 1, 6)
        for i in range(_EMBEDDING_DIMENSIONS)
    ]


def _embeddings_answer(request: dict[str, Any]) -> Answer:
    raw_input = request.get("input")
    texts = [raw_input] if isinstance(raw_input, str) else raw_input
    if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
        return error_answer(
            400, "'input' must be a string or a non-empty list of strings.", "invalid_request_error"
        )
    model = request.get("model")
    if not isinstance(model, str):
        model = _DEFAULT_EMBEDDING_MODEL
    tokens = sum(_word_count(text) for text in texts)
    data = [
        {"object": "embedding", "index": index, "embedding": _embedding(text)}
        for index, text in enumerate(texts)
    ]
    return Answer(
        200,
        dump_json(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        ),
    )


def answer_for(base_path: str, method: str, path: str, payload: Any, sequence: int) -> Answer:
    """The normal answer to a request: `path` includes the query, `sequence` numbers the IDs."""
    route = urlsplit(path).path
    if base_path and not (route == base_path or route.startswith(base_path + "/")):
        return _not_found(method, route)
    endpoint = route[len(base_path) :]
    if method == "GET" and endpoint == "/models":
        return _models_answer()
    if method != "POST" or endpoint not in ("/chat/completions", "/embeddings", "/messages"):
        return _not_found(method, route)
    if not isinstance(payload, dict):
        return error_answer(
            400,
            "We could not parse the JSON body of your request: expected a JSON object.",
            "invalid_request_error",
        )
    if endpoint == "/chat/completions":
        return _chat_answer(payload, sequence)
    if endpoint == "/messages":
        return _messages_answer(payload, sequence)
    return _embeddings_answer(payload)
