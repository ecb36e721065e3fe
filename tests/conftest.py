"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aigw_middleware import client as client_module
from aigw_middleware.config import GatewayConfig
from aigw_middleware.context import current_context
from aigw_middleware.testing import FakeGateway

from .fake_secrets import FAKE_API_KEY

#: The session-wide secrets check (see its module), and pytester, which tests it.
pytest_plugins = ["tests.secrets_check", "pytester"]


@pytest.fixture(autouse=True)
def _no_context_left_bound() -> Iterator[None]:
    """Every test must leave no correlation context bound."""
    assert current_context() is None, "a context was bound before the test started"
    yield
    assert current_context() is None, "the test left a correlation context bound"


@pytest.fixture
def gateway_config(fake_gateway: FakeGateway) -> GatewayConfig:
    """A config pointing at the test's FakeGateway, with fast retries and no environment."""
    return GatewayConfig.from_env({}, base_url=fake_gateway.base_url, api_key=FAKE_API_KEY)


@pytest.fixture
def shared_config(gateway_config: GatewayConfig) -> Iterator[GatewayConfig]:
    """Makes ``get_client()`` / ``get_async_client()`` use ``gateway_config`` for one test."""
    client_module.configure(gateway_config)
    yield gateway_config
    client_module.configure(None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the reliability suite (tests/reliability) at its long, on-demand scale",
    )


@pytest.fixture
def exporter() -> Iterator[Any]:
    """The OpenTelemetry SDK as the global tracer provider for one test, exporting to memory.

    Yields the ``InMemorySpanExporter``; afterwards no tracer provider is set, as before.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_tracer_provider()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_tracer_provider()


def reset_tracer_provider() -> None:
    """No global tracer provider, so that one may be set again (as opentelemetry-test-utils
    does between tests)."""
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
