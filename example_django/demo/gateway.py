"""The example's own FakeGateway, for running the project with no outside service."""

from __future__ import annotations

import functools
import sys

from aigw_middleware.testing import FakeGateway


@functools.cache
def embedded_gateway_url() -> str:
    """Start a FakeGateway in this process (once) and return its base URL."""
    gateway = FakeGateway().start()
    print(f"example_django: AIGW_BASE_URL is unset; using {gateway.base_url}", file=sys.stderr)
    return gateway.base_url
