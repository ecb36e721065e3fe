"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aigw_middleware.testing import FakeGateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeGateway]:
    """One FakeGateway for a whole module, for servers started once per module."""
    with FakeGateway() as gw:
        yield gw
