"""The session-wide secrets check: no fake secret of the suite shows where it should not.

Loaded by ``tests/conftest.py`` as a pytest plugin. For the whole session it scans

- every log record of every logger at every level (the root logger is set to let all through):
  the formatted line with its traceback, and every attribute, ``extra=`` fields included;
- every exception of ``aigw_middleware.errors`` when it is made (``str`` and ``repr``), and every
  exception that fails a test;
- the ``repr`` of every ``GatewayConfig``, ``GatewayClient`` and ``AsyncGatewayClient`` made,

for the suite's fake API keys, their ``Authorization`` values and its private prompt text. A hit
fails the test that produced it (hits outside any test fail the session), and the terminal
summary prints the figures: what was scanned, and the hits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from aigw_middleware import client as client_module
from aigw_middleware import config as config_module
from aigw_middleware import errors as errors_module

from .fake_secrets import SECRETS


@dataclass
class Figures:
    """What the check scanned, and what it found."""

    records: int = 0
    exceptions: int = 0
    reprs: int = 0
    hits: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def scan(self, text: str, where: str) -> None:
        for number, secret in enumerate(SECRETS):
            if secret in text:
                # The report names the secret and shows where it was, never the secret itself.
                start = max(text.index(secret) - 120, 0)
                context = text[start : start + 300].replace(secret, "<SECRET>")
                finding = f"{where}: fake secret #{number} in {context!r}"
                self.hits.append(finding)
                self.pending.append(finding)


figures = Figures()


#: The attributes every log record has; anything else came through ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _ScanningHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)

    def emit(self, record: logging.LogRecord) -> None:
        figures.records += 1
        try:
            parts = [record.getMessage()]
        except Exception:  # a record that cannot be formatted still has its parts scanned
            parts = [repr(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts.extend(
            f"{key}={value!r}" for key, value in vars(record).items() if key not in _STANDARD
        )
        figures.scan(" ".join(parts), f"log record on {record.name!r}")


def _scanned_on_init(cls: type[Any], count: Callable[[], None], what: str) -> None:
    original = cls.__dict__.get("__init__")
    if original is None:
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if type(self).__init__ is __init__:  # the outermost __init__: the object is complete
            count()
            figures.scan(f"{self!s} {self!r}", f"{what} {type(self).__name__}")

    cls.__init__ = __init__


def _count_exception() -> None:
    figures.exceptions += 1


def _count_repr() -> None:
    figures.reprs += 1


def _watch_the_package() -> None:
    for item in vars(errors_module).values():
        if isinstance(item, type) and issubclass(item, BaseException):
            _scanned_on_init(item, _count_exception, "exception")
    for cls in (
        config_module.GatewayConfig,
        client_module.GatewayClient,
        client_module.AsyncGatewayClient,
    ):
        original_post_init = cls.__dict__.get("__post_init__")
        if original_post_init is not None:
            _scanned_post_init(cls, original_post_init)
        else:
            _scanned_on_init(cls, _count_repr, "repr of")


def _scanned_post_init(cls: type[Any], original: Callable[[Any], None]) -> None:
    @functools.wraps(original)
    def __post_init__(self: Any) -> None:
        original(self)
        _count_repr()
        figures.scan(repr(self), f"repr of {cls.__name__}")

    cls.__post_init__ = __post_init__  # type: ignore[attr-defined]


_handler = _ScanningHandler()


def pytest_configure(config: pytest.Config) -> None:
    _watch_the_package()
    root = logging.getLogger()
    root.addHandler(_handler)
    root.setLevel(1)


@pytest.fixture(autouse=True)
def _no_secret_shows() -> Iterator[None]:
    """Fails the test during which a fake secret showed in a log record, exception or repr."""
    figures.pending.clear()
    yield
    found, figures.pending[:] = list(figures.pending), []
    assert not found, "a secret showed:\n" + "\n".join(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    if call.excinfo is not None:
        figures.exceptions += 1
        value = call.excinfo.value
        figures.scan(f"{value!s} {value!r}", f"exception failing {item.nodeid}")
    return (yield)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_handler)
    if figures.pending and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"secrets check: {figures.records} log records, {figures.exceptions} exceptions, "
        f"{figures.reprs} reprs scanned for {len(SECRETS)} fake secrets; "
        f"hits: {len(figures.hits)}"
    )
    for finding in figures.hits[:20]:
        terminalreporter.write_line(f"  {finding}")
