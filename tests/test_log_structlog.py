"""Specification of aigw_middleware.log.structlog_processor: correlation fields in structlog events."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import structlog

from aigw_middleware import bind_context
from aigw_middleware.log import structlog_processor


def rendered(**bound: Any) -> dict[str, Any]:
    """One event through ``structlog_processor`` and the JSON renderer, parsed back."""
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog_processor, structlog.processors.JSONRenderer()],
    ).bind(**bound)
    line = log.info("asked the gateway")
    assert isinstance(line, str)
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_event_gets_the_bound_request_id_tenant_team_user_and_session() -> None:
    with bind_context(
        request_id="req-42", tenant="acme", team="search", user="u-7", session="chat-1"
    ):
        event = rendered()

    assert event == {
        "event": "asked the gateway",
        "request_id": "req-42",
        "tenant": "acme",
        "team": "search",
        "user": "u-7",
        "session": "chat-1",
    }


def test_event_gets_dashes_when_nothing_is_bound() -> None:
    event = rendered()

    assert (event["request_id"], event["tenant"], event["team"]) == ("-", "-", "-")
    assert (event["user"], event["session"]) == ("-", "-")


def test_absent_tenant_and_team_of_a_bound_context_are_dashes() -> None:
    with bind_context(request_id="req-42"):
        event = rendered()

    assert (event["request_id"], event["tenant"], event["team"]) == ("req-42", "-", "-")


def test_keys_the_event_already_has_are_kept() -> None:
    with bind_context(request_id="req-42", tenant="acme"):
        event = rendered(tenant="from-bind", request_id="from-bind")

    assert (event["request_id"], event["tenant"], event["team"]) == ("from-bind", "from-bind", "-")


class FormattedLines(logging.Handler):
    """Keeps each record as its formatter renders it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_stdlib_records_rendered_by_processor_formatter_get_the_fields() -> None:
    handler = FormattedLines()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog_processor],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    log = logging.getLogger("tests.structlog.stdlib")
    log.addHandler(handler)
    log.propagate = False
    try:
        with bind_context(request_id="req-42", tenant="acme"):
            log.warning("gateway slow")
    finally:
        log.removeHandler(handler)
        log.propagate = True

    [line] = handler.lines
    assert json.loads(line) == {
        "event": "gateway slow",
        "request_id": "req-42",
        "tenant": "acme",
        "team": "-",
        "user": "-",
        "session": "-",
    }


# The JSON logging example of docs/integrations/logging.md, run as it is written there.
DOCUMENTED_JSON_CONFIG = """
import logging.config

import structlog

from aigw_middleware import bind_context
from aigw_middleware.log import structlog_processor

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": structlog.processors.JSONRenderer(),
            "foreign_pre_chain": [
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog_processor,
            ],
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
logging.config.dictConfig(LOGGING)

with bind_context(request_id="req-42", tenant="acme", team="search"):
    logging.getLogger("shop.views").info("summary requested")
logging.getLogger("shop.cron").info("nightly run")
"""


def test_documented_json_logging_config_writes_one_json_object_per_record() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DOCUMENTED_JSON_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    first, second = (json.loads(line) for line in done.stderr.splitlines())
    assert set(first) == {
        "event",
        "level",
        "logger",
        "timestamp",
        "request_id",
        "tenant",
        "team",
        "user",
        "session",
    }
    assert first["event"] == "summary requested"
    assert (first["request_id"], first["tenant"], first["team"]) == ("req-42", "acme", "search")
    assert (first["level"], first["logger"]) == ("info", "shop.views")
    assert "timestamp" in first
    assert (second["request_id"], second["tenant"], second["team"]) == ("-", "-", "-")
