"""An ASGI client that leaves mid-stream, as a browser closing the tab does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Message, Any, Any], Awaitable[None]]


async def serve_to_a_client_that_leaves(
    app: ASGIApp, path: str, request_id: str, *, drop_late_sends: bool = False
) -> list[Message]:
    """Serves ``GET path`` to a client that disconnects once the first body part is on its way.

    The scope says ASGI spec 2.0, so frameworks listen for the disconnect while they stream.
    With ``drop_late_sends`` the server drops each part sent after the disconnect at once (as
    uvicorn does), for an app that does not listen for it. Returns the messages the app sent; waits a few event-loop steps afterwards, in which cleanup
    scheduled by the disconnect runs.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-ai-request-id", request_id.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[Message] = []
    gone = asyncio.Event()
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if gone.is_set() and drop_late_sends:
            return
        if message["type"] == "http.response.body":
            gone.set()
            await asyncio.sleep(1)  # the client is gone: this send never completes

    # In a task of its own, as ASGI servers run each request: on Python 3.12+ wait_for would run
    # the app in the caller's task, which outlives the request. Django 6.1 streams the body in
    # the handler's own task (5.2 in a task it makes), and a body it drops on a disconnect is
    # closed when that task ends.
    await asyncio.wait_for(asyncio.ensure_future(app(scope, receive, send)), timeout=10)
    for _ in range(3):
        await asyncio.sleep(0)
    return sent
