"""The typed results of gateway calls, and reading them from a response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from .context import CorrelationContext
from .errors import GatewayStatusError, _parse_error_body

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


def _first(response: httpx.Response, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = response.headers.get(name)
        if value:
            return str(value)
    return None


def gateway_request_id(response: httpx.Response) -> str | None:
    """The gateway's own request ID from a response, if it sent one."""
    return _first(response, GATEWAY_REQUEST_ID_HEADERS)


def provider_request_id(response: httpx.Response) -> str | None:
    """The provider's request ID as the gateway passed it on, if it did."""
    return _first(response, PROVIDER_REQUEST_ID_HEADERS)


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a successful response; a list is wrapped as ``{"data": [...]}``."""
    try:
        data = response.json()
    except ValueError as exc:
        raise GatewayStatusError(
            response.status_code,
            _parse_error_body(b"", "the gateway's answer is not JSON"),
            gateway_request_id=gateway_request_id(response),
            provider_request_id=provider_request_id(response),
        ) from exc
    return data if isinstance(data, dict) else {"data": data}


@dataclass(frozen=True, slots=True)
class _Result:
    raw: dict[str, Any]
    request_id: str
    gateway_request_id: str | None
    provider_request_id: str | None = None

    @classmethod
    def of(cls: type[_R], response: httpx.Response, context: CorrelationContext) -> _R:
        """The result that ``response`` carries, for the call made with ``context``."""
        return cls(
            json_body(response),
            context.request_id,
            gateway_request_id(response),
            provider_request_id(response),
        )


@dataclass(frozen=True, slots=True)
class _ModelResult(_Result):
    @property
    def model(self) -> str | None:
        return self.raw.get("model")

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.raw.get("usage")


@dataclass(frozen=True, slots=True)
class ChatCompletion(_ModelResult):
    """A chat completion: ``content`` of the first choice, ``model``, ``usage`` and ``raw``."""

    @property
    def content(self) -> str:
        choices = self.raw.get("choices") or [{}]
        return (choices[0].get("message") or {}).get("content") or ""


@dataclass(frozen=True, slots=True)
class ChatCompletionChunk:
    """One streamed chunk: ``delta`` is the first choice's new text ("" when none)."""

    raw: dict[str, Any]

    @property
    def delta(self) -> str:
        choices = self.raw.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or ""

    @property
    def finish_reason(self) -> str | None:
        choices = self.raw.get("choices") or [{}]
        reason = choices[0].get("finish_reason")
        return None if reason is None else str(reason)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.raw.get("usage")


@dataclass(frozen=True, slots=True)
class Embeddings(_ModelResult):
    """Embeddings: ``vectors`` in input order, ``model``, ``usage`` and ``raw``."""

    @property
    def vectors(self) -> list[list[float]]:
        items = sorted(self.raw.get("data") or [], key=lambda item: item.get("index", 0))
        return [item.get("embedding") or [] for item in items]


@dataclass(frozen=True, slots=True)
class ModelList(_Result):
    """The gateway's models: ``ids`` and ``raw``."""

    @property
    def ids(self) -> list[str]:
        return [item.get("id", "") for item in self.raw.get("data") or []]
