"""The typed results of gateway calls, and reading them from a response.

A result is checked when it is made: an answer of the wrong shape (a string where the choices
should be, a number for the content) is a :class:`~aigw_middleware.errors.MalformedResponseError`
from the call, so the accessors never fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, ClassVar, TypeVar

import httpx

from .context import CorrelationContext
from .errors import ErrorBody, MalformedResponseError

#: Response headers where gateways put their own request ID, in the order they are looked up:
#: each gateway's own ID first (Helicone, Bifrost, Cloudflare, Kong, LiteLLM, Portkey), then the
#: generic ones, which a gateway may pass on from the provider.
GATEWAY_REQUEST_ID_HEADERS = (
    "helicone-id",
    "x-bifrost-request-id",
    "cf-aig-log-id",
    "x-kong-request-id",
    "x-litellm-call-id",
    "x-portkey-trace-id",
    "x-request-id",
    "request-id",
)
#: Response headers carrying the provider's own request ID, as gateways pass it on.
PROVIDER_REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "llm_provider-x-request-id",
    "helicone-provider-req-id",
    "apim-request-id",
)

_R = TypeVar("_R", bound="_Result")
_T = TypeVar("_T")


class ShapeError(ValueError):
    """A value of a result is not of the type its accessor returns."""


_GATEWAY_NAMES = tuple((name.encode(), name) for name in GATEWAY_REQUEST_ID_HEADERS)
_PROVIDER_NAMES = tuple((name.encode(), name) for name in PROVIDER_REQUEST_ID_HEADERS)


def _first(
    headers: httpx.Headers, present: set[bytes], names: tuple[tuple[bytes, str], ...]
) -> str | None:
    for raw_name, name in names:
        if raw_name in present:
            value = headers.get(name)
            if value:
                return str(value)
    return None


def _present(headers: httpx.Headers) -> set[bytes]:
    # One pass over the raw names instead of a scan of every header per name looked for.
    return {key.lower() for key, _ in headers.raw}


def gateway_request_id(response: httpx.Response) -> str | None:
    """The gateway's own request ID from a response, if it sent one."""
    headers = response.headers
    return _first(headers, _present(headers), _GATEWAY_NAMES)


def provider_request_id(response: httpx.Response) -> str | None:
    """The provider's request ID as the gateway passed it on, if it did."""
    headers = response.headers
    return _first(headers, _present(headers), _PROVIDER_NAMES)


def request_ids(response: httpx.Response) -> tuple[str | None, str | None]:
    """:func:`gateway_request_id` and :func:`provider_request_id`, from one pass."""
    headers = response.headers
    present = _present(headers)
    return _first(headers, present, _GATEWAY_NAMES), _first(headers, present, _PROVIDER_NAMES)


def malformed(
    response: httpx.Response, context: CorrelationContext, attempts: int, problem: str
) -> MalformedResponseError:
    """The error for an answer that cannot be read; ``problem`` never quotes the answer."""
    gateway_id, provider_id = request_ids(response)
    return MalformedResponseError(
        response.status_code,
        ErrorBody(problem),
        request_id=context.request_id,
        gateway_request_id=gateway_id,
        provider_request_id=provider_id,
        attempts=attempts,
    )


def parse_json(text: str | bytes) -> Any:
    """JSON, or :class:`ShapeError` for text that is not JSON (hostile nesting included)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        problem = "is not JSON" if isinstance(exc, ValueError) else "is nested too deeply"
        raise ShapeError(problem) from None


def checked(result: _T, fields: Iterable[str]) -> _T:
    """``result`` once each of ``fields`` reads as its type; else :class:`ShapeError`."""
    for name in fields:
        getattr(result, name)
    return result


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ShapeError(f"{where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ShapeError(f"{where} is not a list")
    return value


def _text(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ShapeError(f"{where} is not a string")
    return value


def _first_choice(raw: dict[str, Any]) -> dict[str, Any]:
    choices = _list(raw.get("choices"), "choices")
    return _object(choices[0] if choices else None, "choices[0]")


def _usage(raw: dict[str, Any]) -> dict[str, Any] | None:
    usage = raw.get("usage")
    return None if usage is None else _object(usage, "usage")


@dataclass(frozen=True, slots=True)
class _Result:
    """What every result of a call has: the parsed answer and the three request IDs."""

    raw: dict[str, Any]
    """The gateway's answer as parsed JSON (a list answer is wrapped as ``{"data": [...]}``)."""
    request_id: str
    """Our request ID, as it went on the wire in ``X-AI-Request-Id``."""
    gateway_request_id: str | None
    """The gateway's own ID for the call (``helicone-id``, ``x-portkey-trace-id``, ...), if sent."""
    provider_request_id: str | None = None
    """The provider's request ID as the gateway passed it on (``x-request-id``, ...), if it did."""

    #: The accessors checked when the result is made.
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def of(
        cls: type[_R], response: httpx.Response, context: CorrelationContext, attempts: int = 1
    ) -> _R:
        """The result that ``response`` carries, for the call made with ``context``."""
        try:
            data = parse_json(response.content)
            raw = data if isinstance(data, dict) else {"data": data}
            result = cls(raw, context.request_id, *request_ids(response))
            return checked(result, cls._FIELDS)
        except ShapeError as exc:
            raise malformed(response, context, attempts, f"the gateway's answer {exc}") from None


@dataclass(frozen=True, slots=True)
class _ModelResult(_Result):
    """A result that names the model that answered and the tokens it used."""

    @property
    def model(self) -> str | None:
        """The model that answered, as the gateway reports it (``None`` when it does not)."""
        return _text(self.raw.get("model"), "model")

    @property
    def usage(self) -> dict[str, Any] | None:
        """The answer's ``usage`` object (``prompt_tokens``, ``completion_tokens``, ...), if any."""
        return _usage(self.raw)


@dataclass(frozen=True, slots=True)
class ChatCompletion(_ModelResult):
    """A chat completion: ``content`` of the first choice, ``model``, ``usage`` and ``raw``."""

    _FIELDS = ("content", "model", "usage")

    @property
    def content(self) -> str:
        """The text of the first choice's message; ``""`` when it has none."""
        message = _object(_first_choice(self.raw).get("message"), "choices[0].message")
        return _text(message.get("content"), "choices[0].message.content") or ""


class _ChunkSlots:
    """A chunk's storage, written once by :func:`chunk_of` before the chunk is handed out."""

    __slots__ = ("delta", "finish_reason", "raw", "usage")

    raw: dict[str, Any]
    delta: str
    finish_reason: str | None
    usage: dict[str, Any] | None


class ChatCompletionChunk(_ChunkSlots):
    """One streamed chunk: ``delta`` is the first choice's new text ("" when none)."""

    __slots__ = ()

    raw: dict[str, Any]
    """The chunk's ``data:`` event as parsed JSON."""
    delta: str
    """The new text of the first choice in this chunk; ``""`` when it has none."""
    finish_reason: str | None
    """Why the answer ended (``"stop"``, ``"length"``, ...) on the last chunk; else ``None``."""
    usage: dict[str, Any] | None
    """Token usage, on the chunk that carries it (with ``stream_options``); else ``None``."""

    def __new__(cls, raw: dict[str, Any]) -> ChatCompletionChunk:
        return chunk_of(raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not ChatCompletionChunk:
            return NotImplemented
        return self.raw == other.raw

    __hash__ = None  # type: ignore[assignment]  # its raw dict is not hashable

    def __repr__(self) -> str:
        return f"ChatCompletionChunk(raw={self.raw!r})"


def chunk_of(raw: dict[str, Any]) -> ChatCompletionChunk:
    """The chunk of one streamed event, its fields read once; :class:`ShapeError` when one is
    not of its type. A well-formed chunk takes the first branch: plain type checks in line."""
    chunk = _ChunkSlots()
    chunk.raw = raw
    choices = raw.get("choices")
    usage = raw.get("usage")
    if (
        choices.__class__ is list
        and choices
        and (first := choices[0]).__class__ is dict
        and (delta := first.get("delta")).__class__ is dict
        and ((content := delta.get("content")) is None or content.__class__ is str)
        and ((finish := first.get("finish_reason")) is None or finish.__class__ is str)
        and (usage is None or usage.__class__ is dict)
    ):
        chunk.delta = content or ""
        chunk.finish_reason = finish
    else:
        first = _first_choice(raw)
        delta = _object(first.get("delta"), "choices[0].delta")
        chunk.delta = _text(delta.get("content"), "choices[0].delta.content") or ""
        chunk.finish_reason = _text(first.get("finish_reason"), "choices[0].finish_reason")
        usage = _usage(raw)
    chunk.usage = usage
    chunk.__class__ = ChatCompletionChunk
    return chunk  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Embeddings(_ModelResult):
    """Embeddings: ``vectors`` in input order, ``model``, ``usage`` and ``raw``."""

    _FIELDS = ("vectors", "model", "usage")

    @property
    def vectors(self) -> list[list[float]]:
        """One vector per input, in the order of the inputs (sorted by each item's ``index``)."""
        items = [_object(item, "data[]") for item in _list(self.raw.get("data"), "data")]
        for item in items:
            if not isinstance(item.get("index", 0), int):
                raise ShapeError("data[].index is not a number")
        vectors = []
        for item in sorted(items, key=lambda item: item.get("index", 0)):
            vector = _list(item.get("embedding"), "data[].embedding")
            if not all(isinstance(x, (int, float)) for x in vector):
                raise ShapeError("data[].embedding is not a list of numbers")
            vectors.append(vector)
        return vectors


@dataclass(frozen=True, slots=True)
class ModelList(_Result):
    """The gateway's models: ``ids`` and ``raw``."""

    _FIELDS = ("ids",)

    @property
    def ids(self) -> list[str]:
        """The ``id`` of each model the gateway lists, in its order."""
        items = (_object(item, "data[]") for item in _list(self.raw.get("data"), "data"))
        return [_text(item.get("id"), "data[].id") or "" for item in items]
