"""The exception hierarchy and the classification of gateway error responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigurationError",
    "ErrorBody",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayStatusError",
    "GatewayTimeoutError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "UpstreamError",
]

_BUDGET_MARKERS = frozenset({"budget_exceeded", "insufficient_quota"})
_MESSAGE_MAX = 300
#: The longest ``type``, ``code`` or gateway/provider ID an error keeps or shows.
_FIELD_MAX = 100


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An exception of ``cls`` with ``args``, made without running its ``__init__``."""
    return cls.__new__(cls, *args)


class _PicklableError(Exception):
    """Pickles by attributes: the default re-runs ``__init__`` with the formatted message only.

    Celery result backends and multiprocessing pickle exceptions; each one comes back with its
    type, message and every attribute.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args), self.__dict__)


class ConfigurationError(ValueError, _PicklableError):
    """A setting is invalid or missing. Names the setting's key and the bad value.

    Secrets never show: the value of a key setting is ``'***'``, and the user and password of
    any URL in the value or the reason are masked (also in ``value``).
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        """The setting as it was written: ``AIGW_TIMEOUT``, ``settings.AIGW["BASE_URL"]``, ..."""
        self.value = "***" if "KEY" in key.upper() and value else _masked(value)
        """The bad value, masked: ``'***'`` for a key, URL credentials as ``***``."""
        self.reason = _mask_url_credentials(reason)
        """What is wrong with it, and what to write instead where that is known."""
        super().__init__(f"{key}={repr(self.value)[:120]}: {self.reason}")


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def _mask_url_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it shown as ``***``.

    ``https://user:secret@gw.example/ai`` becomes ``https://***@gw.example/ai``.
    """
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def _masked(value: object) -> object:
    if isinstance(value, str):
        return _mask_url_credentials(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_masked(item) for item in value)
    return value


class GatewayError(_PicklableError):
    """Base class of every failure of a call to the gateway."""

    def __init__(self, message: str, *, request_id: str | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.request_id = request_id
        """Our request ID, as it went on the wire; None when the call failed before one was chosen."""
        self.attempts = attempts
        """How many attempts were made, retries included."""


class GatewayConnectionError(GatewayError):
    """The gateway could not be reached, or the connection broke before the answer was complete."""

    def __init__(
        self, message: str, *, request_id: str | None = None, attempts: int = 1, target: str = ""
    ) -> None:
        self.target = target
        """The method, host and path that could not be reached (never the query string)."""
        where = f" to {target}" if target else ""
        super().__init__(
            f"{message}{where} (request_id={request_id}, attempts={attempts})",
            request_id=request_id,
            attempts=attempts,
        )


class GatewayTimeoutError(GatewayConnectionError):
    """The gateway did not answer within the configured timeout or deadline."""


class InvalidRequestError(GatewayError, ValueError):
    """The call was refused before anything was sent: a header value with CR, LF or NUL, or a
    URL outside ``base_url`` and ``propagate_to``. Never retried."""


class ErrorBody:
    """What a gateway error response said: message, type and code, from any body shape."""

    __slots__ = ("code", "message", "raw", "type")

    def __init__(
        self, message: str, type: str | None = None, code: str | None = None, raw: Any = None
    ) -> None:
        self.message = message
        """The gateway's error message (or a description of an answer that could not be read)."""
        self.type = type
        """The error's ``type``, e.g. ``"budget_exceeded"``, if the body had one."""
        self.code = code
        """The error's ``code``, e.g. ``"insufficient_quota"``, if the body had one."""
        self.raw = raw
        """The parsed body as the gateway sent it; None when it was not JSON."""


def _parse_error_body(content: bytes, reason: str = "") -> ErrorBody:
    """Read an OpenAI-style error body, any other JSON, or plain text (hostile nesting too)."""
    try:
        return _parse_any_error_body(content, reason)
    except RecursionError:
        return ErrorBody(_cut(f"{reason} (an error body nested too deeply to read)".strip()))


def _parse_any_error_body(content: bytes, reason: str) -> ErrorBody:
    try:
        data: Any = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        text = content.decode("utf-8", "replace").strip()
        return ErrorBody(_cut(" ".join(text.split()) or reason))
    if not isinstance(data, dict):
        return ErrorBody(_cut(json.dumps(data)) if data is not None else reason, raw=data)
    detail: Any = data.get("error", data)
    if isinstance(detail, str):
        return ErrorBody(_cut(detail), _text(data.get("type")), _text(data.get("code")), data)
    if not isinstance(detail, dict):
        return ErrorBody(_cut(json.dumps(detail)), raw=data)
    message = detail.get("message") or detail.get("detail") or detail.get("msg")
    if message is None:
        message = json.dumps(detail)
    return ErrorBody(
        _cut(message if isinstance(message, str) else json.dumps(message)),
        _text(detail.get("type")),
        _text(detail.get("code")),
        data,
    )


def _text(value: object) -> str | None:
    """A ``type`` or ``code`` field of an error body, safe to show on one line: control and
    other non-printable characters escaped, at most 100 characters."""
    return None if value is None else _one_line(str(value))


def _one_line(text: str, limit: int = _FIELD_MAX) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``), cut to
    ``limit`` characters: a gateway's value cannot break or flood a log line."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


def _is_budget_error(status: int, body: ErrorBody) -> bool:
    """Budget or quota exhaustion: 402, 412, or a body whose type or code says so."""
    return status in (402, 412) or body.type in _BUDGET_MARKERS or body.code in _BUDGET_MARKERS


class GatewayStatusError(GatewayError):
    """The gateway answered with an error status.

    Carries ``status``, the gateway's ``message``, ``type`` and ``code``, our ``request_id``,
    the gateway's own ``gateway_request_id``, the provider's ``provider_request_id`` (when the
    gateway passed it on), ``retry_after`` (seconds, when the gateway said), ``attempts`` and the
    parsed ``body``.
    """

    def __init__(
        self,
        status: int,
        body: ErrorBody,
        *,
        request_id: str | None = None,
        gateway_request_id: str | None = None,
        provider_request_id: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
        note: str = "",
    ) -> None:
        self.status = status
        """The HTTP status of the answer."""
        self.body = body
        """The parsed error body."""
        self.message = body.message
        """The gateway's error message."""
        self.type = body.type
        """The error's ``type``, if the body had one."""
        self.code = body.code
        """The error's ``code``, if the body had one."""
        self.gateway_request_id = gateway_request_id
        """The gateway's own ID for the call, if it sent one."""
        self.provider_request_id = provider_request_id
        """The provider's request ID as the gateway passed it on, if it did."""
        self.retry_after = retry_after
        """Seconds the gateway asked to wait (``retry-after-ms`` / ``Retry-After``), if it did."""
        parts = [f"{status} {body.message!r}"]
        if body.type or body.code:
            parts.append(f"(type={body.type}, code={body.code})")
        parts.append(f"request_id={request_id}")
        # The gateway's IDs come from its headers: shown bounded, like its type and code.
        shown_gateway_id = None if gateway_request_id is None else _one_line(gateway_request_id)
        parts.append(f"gateway_request_id={shown_gateway_id}")
        if provider_request_id is not None:
            parts.append(f"provider_request_id={_one_line(provider_request_id)}")
        if retry_after is not None:
            parts.append(f"retry_after={retry_after:g}s")
        parts.append(f"attempts={attempts}")
        if note:
            parts.append(note)
        super().__init__(" ".join(parts), request_id=request_id, attempts=attempts)


class MalformedResponseError(GatewayStatusError):
    """The gateway answered, but the answer cannot be read: not JSON, JSON of the wrong shape, a
    body that does not decode, or a malformed event in a stream. ``status`` is the response's."""


class BadRequestError(GatewayStatusError):
    """400 or 422: the gateway rejected the request as malformed."""


class AuthenticationError(GatewayStatusError):
    """401: the API key was missing or refused."""


class PermissionDeniedError(GatewayStatusError):
    """403: the key may not use this model or route."""


class NotFoundError(GatewayStatusError):
    """404: unknown route or model."""


class RateLimitError(GatewayStatusError):
    """429 that is not a budget error; ``retry_after`` says when to try again, if known."""


class BudgetExceededError(GatewayStatusError):
    """Budget or quota exhausted (402, 412, or a budget_exceeded/insufficient_quota body).

    Never retried: waiting does not help.
    """


class UpstreamError(GatewayStatusError):
    """5xx: the gateway or the provider behind it failed."""


_BY_STATUS: Mapping[int, type[GatewayStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def _classify(status: int, body: ErrorBody) -> type[GatewayStatusError]:
    """The exception class for an error response."""
    if _is_budget_error(status, body):
        return BudgetExceededError
    if status >= 500:
        return UpstreamError
    return _BY_STATUS.get(status, GatewayStatusError)
