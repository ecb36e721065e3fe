"""A fake OpenAI-compatible AI gateway for tests and demos.

`FakeGateway` is a small stdlib HTTP server that answers chat completions (plain and
streamed), embeddings, model listings and Anthropic-style messages deterministically,
records every request it receives, and can be told to misbehave (errors, delays, dropped
connections, cut streams) for the next requests::

    with FakeGateway() as gw:
        client = httpx.Client(base_url=gw.base_url)
        client.post("/chat/completions", json={"model": "gpt-4o-mini", "messages": [...]})
        assert gw.last is not None and gw.last.headers["x-ai-request-id"]

It is also a pytest plugin providing the `fake_gateway` fixture, and a console that prints
a line per request it receives (``--help`` lists its switches)::

    python -m aigw_middleware.testing
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from ._console import main
from ._fakegateway import FakeGateway
from ._fakeserver import RecordedRequest

__all__ = ["FakeGateway", "RecordedRequest", "main"]

for _public in (FakeGateway, RecordedRequest):
    _public.__module__ = __name__

# pytest loads this module as a plugin (or a test imports it) after importing itself; apps and
# the console that use FakeGateway outside a test run do not pay for importing pytest.
if "pytest" in sys.modules:
    import pytest

    @pytest.fixture
    def fake_gateway() -> Iterator[FakeGateway]:
        """A running FakeGateway, stopped after the test."""
        with FakeGateway() as gateway:
            yield gateway

    __all__ += ["fake_gateway"]


if __name__ == "__main__":
    raise SystemExit(main())
