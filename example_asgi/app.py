"""The ASGI entry point: ``uvicorn example_asgi.app:app``.

Endpoints (add ``&tenant=acme`` or ``&tenant=globex`` to pick a demo tenant):

- ``GET /`` what is bound, and the endpoints
- ``GET /chat?q=hello`` a plain call through ``get_async_client()``
- ``GET /stream?q=hello`` newline-delimited JSON streamed while the gateway streams
- ``GET /openai?q=hello`` the same call through the OpenAI SDK (``aigw_middleware.openai``)
- ``GET /background?q=hello`` answers at once; a background task calls the gateway afterwards
- ``WS /ws`` each text message is a question; each answer comes back as JSON
- ``GET /bench?client=shared`` one call for the benchmarks (``bench/e2e.py``): ``shared``,
  ``per_request`` (a new ``httpx.AsyncClient`` through ``AsyncCorrelationTransport``),
  ``aigw_per_request`` (a new ``AsyncGatewayClient``), ``openai_per_request`` or ``plain``
  (httpx without correlation)

Every response carries ``X-AI-Request-Id``; send one (or ``X-Request-Id``) to choose it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse

from aigw_middleware import (
    AsyncGatewayClient,
    GatewayConfig,
    GatewayError,
    current_context,
    get_async_client,
)
from aigw_middleware.asgi import AIGatewayMiddleware
from aigw_middleware.client import configure
from aigw_middleware.log import CorrelationFilter
from aigw_middleware.openai import AsyncOpenAI
from aigw_middleware.testing import FakeGateway
from aigw_middleware.transport import AsyncCorrelationTransport

from .tenancy import resolve_tenant

MODEL = "gpt-4o-mini"
LOG_FORMAT = (
    "%(asctime)s %(levelname)-7s [%(request_id)s %(tenant)s/%(team)s] %(name)s: %(message)s"
)

logger = logging.getLogger("example_asgi")


def configure_logging() -> None:
    """Every line of the app and of aigw_middleware shows the request ID, tenant and team."""
    handler = logging.StreamHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for name in ("example_asgi", "aigw_middleware"):
        named = logging.getLogger(name)
        named.addHandler(handler)
        named.setLevel(logging.INFO)
        named.propagate = False


def gateway_config() -> tuple[GatewayConfig, FakeGateway | None]:
    """The environment's gateway, else an embedded FakeGateway on a free loopback port."""
    if os.environ.get("AIGW_BASE_URL"):
        return GatewayConfig.from_env(tenant_resolver=resolve_tenant), None
    embedded = FakeGateway().start()
    logger.info("AIGW_BASE_URL is not set: using the embedded FakeGateway at %s", embedded.base_url)
    config = GatewayConfig.from_env(base_url=embedded.base_url, tenant_resolver=resolve_tenant)
    return config, embedded


configure_logging()
CONFIG, EMBEDDED_GATEWAY = gateway_config()
configure(CONFIG)  # get_client(), get_async_client() and AsyncOpenAI() now use CONFIG
llm = AsyncOpenAI()
# Only for GET /bench?client=plain: httpx without correlation, the benchmarks' baseline.
plain_http = httpx.AsyncClient(base_url=f"{CONFIG.base_url}/", trust_env=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logger.info("example_asgi started; gateway %s", CONFIG.base_url)
    yield
    await llm.close()
    await plain_http.aclose()
    if EMBEDDED_GATEWAY is not None:
        EMBEDDED_GATEWAY.stop()
    logger.info("example_asgi stopped")


app = FastAPI(title="aigw-middleware ASGI example", lifespan=lifespan)


@app.middleware("http")
async def access_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """One line per request; it runs inside AIGatewayMiddleware, so the line has its fields."""
    started = time.perf_counter()
    response = await call_next(request)
    elapsed = (time.perf_counter() - started) * 1000
    logger.info(
        "%s %s -> %s %.1fms", request.method, request.url.path, response.status_code, elapsed
    )
    return response


@app.exception_handler(GatewayError)
async def gateway_failed(request: Request, exc: GatewayError) -> JSONResponse:
    """A gateway failure becomes a 502 naming the error; the response still carries the ID."""
    logger.warning("gateway call failed: %s", exc)
    return JSONResponse(
        {**correlation(), "error": type(exc).__name__, "detail": str(exc)}, status_code=502
    )


# Added last, so it is the outermost middleware: the access log above runs inside its context.
app.add_middleware(AIGatewayMiddleware, config=CONFIG)


def correlation() -> dict[str, Any]:
    """What the code sees as bound for this request."""
    context = current_context()
    if context is None:
        return dict.fromkeys(("request_id", "tenant", "team", "user", "session"))
    return {
        "request_id": context.request_id,
        "tenant": context.tenant,
        "team": context.team,
        "user": context.user,
        "session": context.session,
    }


def question(q: str) -> list[Any]:
    return [{"role": "user", "content": q}]


@app.get("/")
async def index() -> dict[str, Any]:
    return {
        **correlation(),
        "endpoints": ["/chat", "/stream", "/openai", "/background", "/ws"],
        "try": "/chat?q=hello&tenant=acme",
    }


@app.get("/chat")
async def chat(q: str = "Say hello") -> dict[str, Any]:
    answer = await get_async_client().chat.completions.create(model=MODEL, messages=question(q))
    logger.info("gateway answered %s", answer.gateway_request_id)
    return {
        **correlation(),
        "answer": answer.content,
        "gateway_request_id": answer.gateway_request_id,
    }


async def ndjson_answer(messages: list[Any]) -> AsyncIterator[str]:
    """Newline-delimited JSON: who is asking, each delta, then the whole answer."""
    yield json.dumps({"event": "start", **correlation()}) + "\n"
    parts: list[str] = []
    stream = await get_async_client().chat.completions.create(
        model=MODEL, messages=messages, stream=True
    )
    async with stream:
        async for chunk in stream:
            parts.append(chunk.delta)
            yield json.dumps({"delta": chunk.delta}) + "\n"
    yield json.dumps({"event": "end", **correlation(), "answer": "".join(parts)}) + "\n"


@app.get("/stream")
async def stream(q: str = "Say hello") -> StreamingResponse:
    return StreamingResponse(ndjson_answer(question(q)), media_type="application/x-ndjson")


@app.get("/openai")
async def openai_sdk(q: str = "Say hello") -> dict[str, Any]:
    completion = await llm.chat.completions.create(model=MODEL, messages=question(q))
    return {**correlation(), "answer": completion.choices[0].message.content}


async def summarise_later(q: str) -> None:
    answer = await get_async_client().chat.completions.create(model=MODEL, messages=question(q))
    logger.info("background call answered %s", answer.gateway_request_id)


@app.get("/background")
async def background(tasks: BackgroundTasks, q: str = "Summarise later") -> dict[str, Any]:
    tasks.add_task(summarise_later, q)
    return {**correlation(), "scheduled": True}


@app.websocket("/ws")
async def chat_socket(websocket: WebSocket) -> None:
    """One request ID for the whole connection: every question's gateway call carries it."""
    await websocket.accept()
    q = await websocket.receive_text()
    answer = await get_async_client().chat.completions.create(model=MODEL, messages=question(q))
    await websocket.send_json({**correlation(), "answer": answer.content})
    await websocket.close()


BENCH_WAYS = ("shared", "per_request", "aigw_per_request", "openai_per_request", "plain")


async def bench_answer(way: str) -> str:
    """One gateway call the way ``way`` says (see the module docstring)."""
    messages = question("Say hello")
    if way == "shared":
        return (
            await get_async_client().chat.completions.create(model=MODEL, messages=messages)
        ).content
    if way == "per_request":
        transport = AsyncCorrelationTransport(httpx.AsyncHTTPTransport(), CONFIG)
        async with httpx.AsyncClient(
            base_url=f"{CONFIG.base_url}/", transport=transport, trust_env=False
        ) as http:
            response = await http.post(
                "chat/completions", json={"model": MODEL, "messages": messages}
            )
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])
    if way == "aigw_per_request":
        async with AsyncGatewayClient(CONFIG) as client:
            return (await client.chat.completions.create(model=MODEL, messages=messages)).content
    if way == "openai_per_request":
        async with AsyncOpenAI() as sdk:
            completion = await sdk.chat.completions.create(model=MODEL, messages=messages)
            return completion.choices[0].message.content or ""
    response = await plain_http.post(
        "chat/completions", json={"model": MODEL, "messages": messages}
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


@app.get("/bench")
async def bench(client: str = "shared") -> JSONResponse:
    if client not in BENCH_WAYS:
        return JSONResponse(
            {"error": f"client must be one of {', '.join(BENCH_WAYS)}"},
            status_code=400,
        )
    return JSONResponse({**correlation(), "answer": await bench_answer(client)})
