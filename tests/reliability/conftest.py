"""The reliability suite's scale (default, or ``--soak``) and the figures every check prints.

Every check records its figures with the ``figures`` fixture; they are printed in a
"reliability figures" section at the end of the run, failed checks included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aigw_middleware.testing import FakeGateway

_FIGURES = pytest.StashKey[list[tuple[str, dict[str, object]]]]()

Figures = Callable[..., None]


@pytest.fixture(scope="session")
def soak(pytestconfig: pytest.Config) -> bool:
    """True when the run asked for the long scale with ``--soak``."""
    return bool(pytestconfig.getoption("--soak"))


@pytest.fixture
def figures(pytestconfig: pytest.Config) -> Figures:
    """``figures("check name", requests=2000, mismatches=0, ...)`` records one line of figures."""

    def record(check: str, **values: object) -> None:
        pytestconfig.stash.setdefault(_FIGURES, []).append((check, values))

    return record


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    recorded = config.stash.get(_FIGURES, [])
    if not recorded:
        return
    scale = "--soak" if config.getoption("--soak") else "default scale"
    terminalreporter.section(f"reliability figures ({scale})")
    width = max(len(check) for check, _ in recorded)
    for check, values in recorded:
        shown = "  ".join(f"{name}={_shown(value)}" for name, value in values.items())
        terminalreporter.write_line(f"{check:<{width}}  {shown}")


def _shown(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@pytest.fixture
def other_host() -> Iterator[FakeGateway]:
    """A second gateway on another loopback address: a host that must receive nothing."""
    with FakeGateway(host="127.0.0.2") as other:
        yield other
