"""The OpenAI SDK's calls on their span (openai.py): the SDK's response and parsed result, and
a stream's chunks, recorded on the :class:`~aigw_middleware._otel.CallSpan` of the call."""

from __future__ import annotations

from typing import Any

import httpx

from ._otel import CallSpan, _record_answer, failed, finish, received, record_body


def sdk_response(call: CallSpan | None, response: httpx.Response) -> None:
    """The SDK's final response: its IDs, and when it was read in full (not a stream), the
    answer's fields, whatever the SDK makes of it (a parsed object or a raw response)."""
    if call is not None:
        received(call, response)
        if getattr(response, "is_stream_consumed", False):
            _record_answer(call, response)


def sdk_result(call: CallSpan, result: Any) -> Any:
    """Record an SDK call's result (a parsed object, or a stream to end the span with)."""
    iterator = getattr(result, "_iterator", None)
    response = getattr(result, "response", None)
    if iterator is None or response is None:
        record_body(call, _sdk_fields(result))
        finish(call)
        return result
    close = result.close
    if hasattr(iterator, "__anext__"):
        result._iterator = _async_chunks(iterator, call)

        async def aclosing() -> None:
            await close()
            finish(call)

        result.close = aclosing
    else:
        result._iterator = _chunks(iterator, call)

        def closing() -> None:
            close()
            finish(call)

        result.close = closing
    return result


def _chunks(iterator: Any, call: CallSpan) -> Any:
    try:
        for chunk in iterator:
            record_body(call, _sdk_fields(chunk))
            yield chunk
    except Exception as exc:
        failed(call, exc)
        raise
    finally:
        finish(call)


async def _async_chunks(iterator: Any, call: CallSpan) -> Any:
    try:
        async for chunk in iterator:
            record_body(call, _sdk_fields(chunk))
            yield chunk
    except Exception as exc:
        failed(call, exc)
        raise
    finally:
        finish(call)


def _sdk_fields(result: Any) -> dict[str, Any]:
    """``id``, ``model`` and ``usage`` of an SDK object, as they are in the JSON answer."""
    usage = getattr(result, "usage", None)
    return {
        "id": getattr(result, "id", None),
        "model": getattr(result, "model", None),
        "usage": {
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
        },
    }
