"""An in-process gateway for fast checks: an ``httpx.MockTransport`` handler that records headers.

The clients it hands out are the library's own (``GatewayClient`` / ``AsyncGatewayClient`` with
the correlation transport); only the network is left out, so each call records exactly the
headers that would have gone on the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from aigw_middleware import AsyncGatewayClient, GatewayClient, GatewayConfig

MESSAGES = [{"role": "user", "content": "hello"}]


class RecordingGateway:
    """Answers chat completions (plain or streamed) and keeps the headers of every call."""

    def __init__(self) -> None:
        self.calls: list[httpx.Headers] = []
        self.config: GatewayConfig | None = None
        self._client: GatewayClient | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(httpx.Headers(request.headers))
        payload = json.loads(request.content or b"{}")
        if payload.get("stream"):
            events = [
                {"choices": [{"index": 0, "delta": {"content": word}}]} for word in ("hi ", "there")
            ]
            body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
            return httpx.Response(
                200,
                content=body + b"data: [DONE]\n\n",
                headers={"content-type": "text/event-stream"},
            )
        answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
        return httpx.Response(200, json=answer)

    @contextmanager
    def serving(self, config: GatewayConfig) -> Iterator[RecordingGateway]:
        """Serves calls for ``config`` (its base URL) in the ``with`` block."""
        self.config, self.calls = config, []
        self._client = GatewayClient(config, transport=httpx.MockTransport(self))
        try:
            yield self
        finally:
            self._client.close()
            self.config = self._client = None

    def client(self) -> GatewayClient:
        """The sync client, shared by every call in the ``serving`` block."""
        if self._client is None:
            raise RuntimeError("RecordingGateway.serving() is not active")
        return self._client

    @asynccontextmanager
    async def async_client(self) -> AsyncIterator[AsyncGatewayClient]:
        """An async client for the running event loop, closed afterwards."""
        if self.config is None:
            raise RuntimeError("RecordingGateway.serving() is not active")
        async with AsyncGatewayClient(self.config, transport=httpx.MockTransport(self)) as client:
            yield client

    def chat(self, **kwargs: Any) -> Any:
        return self.client().chat.completions.create(model="m", messages=MESSAGES, **kwargs)


#: The one recording gateway the test apps' views call.
GATEWAY = RecordingGateway()
