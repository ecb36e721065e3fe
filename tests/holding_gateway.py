"""A loopback gateway that holds every answer a moment and counts the calls in flight at once:
how many connections a client's pool really opens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

ANSWER = json.dumps(
    {
        "id": "chatcmpl-held",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "held"}}],
    }
).encode()


@dataclass
class Holding:
    base_url: str = ""
    in_flight: int = 0
    peak: int = 0
    answered: int = 0


@asynccontextmanager
async def holding_gateway(hold: float) -> AsyncIterator[Holding]:
    """An OpenAI-compatible gateway on 127.0.0.1 answering each request after ``hold`` seconds."""
    stats = Holding()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                stats.in_flight += 1
                stats.peak = max(stats.peak, stats.in_flight)
                await asyncio.sleep(hold)
                stats.in_flight -= 1
                stats.answered += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    stats.base_url = f"http://127.0.0.1:{port}/v1"
    async with server:
        yield stats
