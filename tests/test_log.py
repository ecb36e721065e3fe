"""CorrelationFilter and the library's own log records: fields present, secrets and bodies absent."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from aigw_middleware import BudgetExceededError, GatewayClient, GatewayConfig, bind_context
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.testing import FakeGateway

SECRET_KEY = "sk-live-VERY-SECRET-KEY"
GATEWAY_SECRET = "pk-GATEWAY-SECRET"
CONTENT = "my private medical question about zebras"


def record(message: str = "hello") -> logging.LogRecord:
    return logging.LogRecord("app", logging.INFO, __file__, 1, message, None, None)


def test_filter_adds_dashes_when_nothing_is_bound() -> None:
    item = record()
    assert CorrelationFilter().filter(item)
    assert (item.request_id, item.tenant, item.team) == ("-", "-", "-")  # type: ignore[attr-defined]


def test_filter_adds_the_bound_values() -> None:
    item = record()
    with bind_context(request_id="req-1", tenant="acme"):
        CorrelationFilter().filter(item)
    assert (item.request_id, item.tenant, item.team) == ("req-1", "acme", "-")  # type: ignore[attr-defined]


def test_filter_keeps_values_a_record_already_carries() -> None:
    item = record()
    item.request_id = "from-task"
    with bind_context(request_id="req-1"):
        CorrelationFilter().filter(item)
    assert item.request_id == "from-task"


def test_filter_in_a_handler_format() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter("[%(request_id)s %(tenant)s/%(team)s] %(message)s"))
    logger = logging.getLogger("tests.log.format")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with bind_context(request_id="req-9", tenant="acme", team="ml"):
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["[req-9 acme/ml] inside", "[- -/-] outside"]


README_FORMAT = "%(levelname)s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ({"request_id": "from-extra"}, "WARNING [from-extra acme/-] app: hello"),
        ({"tenant": "other"}, "WARNING [req-1 other/-] app: hello"),
        ({"team": "ml"}, "WARNING [req-1 acme/ml] app: hello"),
        ({"request_id": "r", "tenant": "t", "team": "x"}, "WARNING [r t/x] app: hello"),
    ],
)
def test_each_field_a_record_lacks_gets_its_value_independently(
    extra: dict[str, str], line: str
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(README_FORMAT))
    app_log = logging.getLogger("app")
    app_log.addHandler(handler)
    app_log.propagate, propagate = False, app_log.propagate
    try:
        with bind_context(request_id="req-1", tenant="acme"):
            app_log.warning("hello", extra=extra)
    finally:
        app_log.removeHandler(handler)
        app_log.propagate = propagate

    assert stream.getvalue() == line + "\n"


class EverythingFormatter(logging.Formatter):
    """The message and every attribute of the record, so nothing hides in ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.getMessage()} {record.__dict__!r}"


@pytest.fixture
def everything_at_debug() -> Iterator[io.StringIO]:
    """Capture every logger (ours, httpx, httpcore, asyncio...) at DEBUG, with all fields."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(EverythingFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_at_debug_no_line_has_the_api_key_authorization_or_message_content(
    everything_at_debug: io.StringIO, fake_gateway: FakeGateway
) -> None:
    config = GatewayConfig(
        base_url=fake_gateway.base_url,
        api_key=SECRET_KEY,
        extra_headers={"x-portkey-api-key": GATEWAY_SECRET},
        max_retries=1,
    )
    messages = [{"role": "user", "content": CONTENT}]
    fake_gateway.queue_response(503, headers={"retry-after-ms": "1"})  # a fast retry
    with GatewayClient(config) as client, bind_context(request_id="req-log", tenant="acme"):
        client.chat.completions.create(model="m", messages=messages)
        for _ in client.chat.completions.create(model="m", messages=messages, stream=True):
            pass
        client.embeddings.create(model="e", input=CONTENT)
        fake_gateway.queue_response(402, json={"error": {"message": "budget"}})
        with pytest.raises(BudgetExceededError):
            client.chat.completions.create(model="m", messages=messages)
    output = everything_at_debug.getvalue()
    assert "req-log" in output, "the capture should have seen our records"
    for secret in (SECRET_KEY, GATEWAY_SECRET, f"Bearer {SECRET_KEY}", CONTENT, "zebras"):
        assert secret not in output


def test_one_record_per_attempt_with_method_target_status_attempt_duration(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gateway.queue_response(503, headers={"retry-after-ms": "1"})  # a fast retry
    with (
        caplog.at_level(logging.INFO, logger="aigw_middleware"),
        GatewayClient(base_url=fake_gateway.base_url) as client,
        bind_context(request_id="req-a", tenant="acme", team="ml"),
    ):
        client.models.list()
    records = [r for r in caplog.records if r.name == "aigw_middleware"]
    assert [(r.aigw_status, r.aigw_attempt, r.levelname) for r in records] == [  # type: ignore[attr-defined]
        (503, 1, "WARNING"),
        (200, 2, "INFO"),
    ]
    for item in records:
        assert item.aigw_method == "GET"  # type: ignore[attr-defined]
        assert item.aigw_target.endswith("/v1/models")  # type: ignore[attr-defined]
        assert item.aigw_duration_ms >= 0  # type: ignore[attr-defined]
        assert (item.request_id, item.tenant, item.team) == ("req-a", "acme", "ml")  # type: ignore[attr-defined]


def test_an_attempt_record_names_its_source_and_goes_through_filters_as_any_record(
    fake_gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The record is made without Logger.log's stack walk: it still names where it comes from,
    and a logger filter and a disabled logger act on it as on any record."""
    import aigw_middleware.log

    logger = logging.getLogger("aigw_middleware")
    dropped: list[str] = []

    def drop(item: logging.LogRecord) -> bool:
        dropped.append(item.getMessage())
        return False

    with (
        caplog.at_level(logging.INFO, logger="aigw_middleware"),
        GatewayClient(base_url=fake_gateway.base_url) as client,
    ):
        client.models.list()
        (first,) = [r for r in caplog.records if r.name == "aigw_middleware"]
        logger.addFilter(drop)
        try:
            client.models.list()
        finally:
            logger.removeFilter(drop)
        logger.disabled = True
        try:
            client.models.list()
        finally:
            logger.disabled = False
    assert (first.pathname, first.funcName) == (aigw_middleware.log.__file__, "_log_attempt")
    assert first.module == "log"
    assert first.lineno > 0
    assert first.getMessage().startswith("aigw GET ")
    assert len(dropped) == 1
    assert dropped[0].startswith("aigw GET ")
    assert len([r for r in caplog.records if r.name == "aigw_middleware"]) == 1
