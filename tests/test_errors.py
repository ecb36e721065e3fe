"""Error classification and messages."""

from __future__ import annotations

import json
import pickle

import pytest

from aigw_middleware import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    GatewayStatusError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
    errors,
)
from aigw_middleware.errors import ErrorBody, _classify, _parse_error_body


def openai_body(message: str, type: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
        (429, RateLimitError),
        (402, BudgetExceededError),
        (412, BudgetExceededError),
        (500, UpstreamError),
        (503, UpstreamError),
        (418, GatewayStatusError),
    ],
)
def test_classification_by_status(status: int, expected: type[GatewayStatusError]) -> None:
    assert _classify(status, _parse_error_body(b"")) is expected


@pytest.mark.parametrize("marker", ["budget_exceeded", "insufficient_quota"])
@pytest.mark.parametrize("status", [400, 429, 500])
def test_budget_bodies_win_at_any_status(marker: str, status: int) -> None:
    assert (
        _classify(status, _parse_error_body(openai_body("over", type=marker)))
        is BudgetExceededError
    )
    assert (
        _classify(status, _parse_error_body(openai_body("over", code=marker)))
        is BudgetExceededError
    )


def test_openai_error_body_is_read() -> None:
    body = _parse_error_body(openai_body("Rate limit reached", "rate_limit_error", "rate_limited"))
    assert (body.message, body.type, body.code) == (
        "Rate limit reached",
        "rate_limit_error",
        "rate_limited",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"message": "plain json"}', "plain json"),
        (b'{"detail": "fastapi style"}', "fastapi style"),
        (b'{"error": "just a string", "code": 7}', "just a string"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"\xff\xfe not utf8", "\ufffd\ufffd not utf8"),
        (b"", "Service Unavailable"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_any_body_shape_gives_a_message(content: bytes, message: str) -> None:
    assert _parse_error_body(content, "Service Unavailable").message == message


def test_long_messages_are_cut() -> None:
    assert len(_parse_error_body(b"x" * 5000).message) <= 300


def test_the_message_names_status_gateway_message_type_code_and_both_request_ids() -> None:
    body = _parse_error_body(openai_body("Budget exceeded for team ml", "budget_exceeded", "b1"))
    error = BudgetExceededError(
        400, body, request_id="req-1", gateway_request_id="gw-9", attempts=1
    )
    text = str(error)
    assert "\n" not in text
    for part in ("400", "Budget exceeded for team ml", "budget_exceeded", "b1", "req-1", "gw-9"):
        assert part in text
    assert (error.status, error.type, error.code, error.request_id) == (
        400,
        "budget_exceeded",
        "b1",
        "req-1",
    )


HOSTILE = "invalid\r\nX-Injected: 1\x1b[31m\x00" + "y" * 10_000


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"error": {"message": "m", "type": HOSTILE, "code": HOSTILE}}).encode(),
        json.dumps({"error": "m", "type": HOSTILE, "code": HOSTILE}).encode(),
        json.dumps({"error": {"message": "m", "type": {"deep": [HOSTILE]}, "code": 10**50}}),
    ],
    ids=["openai-shape", "flat", "non-strings"],
)
def test_a_hostile_type_and_code_are_escaped_and_bounded_in_the_message(
    content: bytes | str,
) -> None:
    body = _parse_error_body(content.encode() if isinstance(content, str) else content)
    error = BadRequestError(400, body, request_id="req-1", gateway_request_id="x" * 5000)

    text = str(error)
    assert text.isprintable(), repr(text)
    assert len(text) < 1000
    assert "req-1" in text
    for field in (error.type, error.code):
        assert field is not None
        assert field.isprintable()
        assert len(field) <= 100


def test_an_ordinary_type_and_code_are_kept_as_sent() -> None:
    body = _parse_error_body(openai_body("no", "invalid_request_error", "model_not_found"))
    assert (body.type, body.code) == ("invalid_request_error", "model_not_found")
    assert _parse_error_body(openai_body("no", "ошибка", "コード")).type == "ошибка"


def test_rate_limit_error_reports_retry_after() -> None:
    error = RateLimitError(429, _parse_error_body(b""), retry_after=120.0, request_id="r")
    assert error.retry_after == 120.0
    assert "retry_after=120s" in str(error)


def _example(cls: type[Exception]) -> Exception:
    """An instance of ``cls`` with every attribute set to a value other than its default."""
    if issubclass(cls, errors.ConfigurationError):
        return cls("AIGW_TIMEOUT", "abc", "must be a positive number of seconds")
    if issubclass(cls, errors.GatewayStatusError):
        body = _parse_error_body(openai_body("slow down", "rate_limit", "r1"))
        return cls(
            429,
            body,
            request_id="req-1",
            gateway_request_id="gw-1",
            retry_after=2.5,
            attempts=3,
            note="gave up",
        )
    if issubclass(cls, errors.GatewayConnectionError):
        return cls("connection refused", request_id="req-1", attempts=3, target="gw/v1/models")
    assert issubclass(cls, errors.GatewayError), cls
    return cls("failed", request_id="req-1", attempts=3)


def _state(value: object) -> object:
    """Everything an exception or error body holds, comparable with ``==``."""
    if isinstance(value, ErrorBody):
        return ("ErrorBody", {name: getattr(value, name) for name in ErrorBody.__slots__})
    if isinstance(value, BaseException):
        return (type(value), value.args, str(value), {k: _state(v) for k, v in vars(value).items()})
    return value


EXCEPTIONS = sorted(
    (
        item
        for name, item in vars(errors).items()
        if not name.startswith("_")
        and isinstance(item, type)
        and issubclass(item, Exception)
        and item.__module__ == errors.__name__
    ),
    key=lambda cls: cls.__name__,
)


def test_every_public_exception_is_in_the_pickle_check() -> None:
    public = {getattr(errors, name) for name in errors.__all__}
    assert {cls for cls in public if isinstance(cls, type) and issubclass(cls, Exception)} <= set(
        EXCEPTIONS
    )
    assert len(EXCEPTIONS) >= 12


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_every_exception_round_trips_through_pickle_with_all_attributes(
    cls: type[Exception], protocol: int
) -> None:
    error = _example(cls)

    copy = pickle.loads(pickle.dumps(error, protocol=protocol))

    assert type(copy) is cls
    assert str(copy) == str(error)
    assert _state(copy) == _state(error)
    assert getattr(copy, "request_id", "req-1") == "req-1"
