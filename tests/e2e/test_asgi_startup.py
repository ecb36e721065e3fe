"""Starlette and FastAPI apps that add the middleware with ``add_middleware``, under uvicorn.

uvicorn's default ``--lifespan auto`` hides an exception raised while Starlette builds its
middleware stack ("ASGI 'lifespan' protocol appears unsupported"); a wrong keyword must still be
on the console before the first request. And an unhandled exception's 500 must carry the
request ID, although Starlette puts ``add_middleware`` middleware inside its error handler.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aigw_middleware.testing import FakeGateway

from .servers import ROOT, ServerProcess, free_port, running, uvicorn

pytestmark = pytest.mark.e2e

TYPO_APP = """
from fastapi import FastAPI
from aigw_middleware.asgi import AIGatewayMiddleware

app = FastAPI()
app.add_middleware(AIGatewayMiddleware, baseurl="http://127.0.0.1:9/v1")


@app.get("/")
async def index():
    return {"ok": True}
"""

FAILING_APPS = """
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from aigw_middleware.asgi import AIGatewayMiddleware

fastapi_app = FastAPI()
fastapi_app.add_middleware(AIGatewayMiddleware)


@fastapi_app.get("/")
async def index():
    return {"ok": True}


@fastapi_app.get("/boom")
async def boom():
    raise RuntimeError("the view failed")


async def ok(request):
    return PlainTextResponse("ok")


async def fail(request):
    raise RuntimeError("the endpoint failed")


starlette_app = Starlette(
    routes=[Route("/", ok), Route("/boom", fail)],
    middleware=[Middleware(AIGatewayMiddleware)],
)
"""


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def test_a_misspelt_keyword_is_printed_at_start_up_before_any_request(tmp_path: Path) -> None:
    write_module(tmp_path, "typo_app", TYPO_APP)
    port = free_port()
    argv = uvicorn("typo_app:app", port, "--app-dir", str(tmp_path))
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while "Uvicorn running on" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    output = log.read_text()

    assert "Uvicorn running on" in output, output
    startup = output[: output.index("Uvicorn running on")]
    assert "baseurl" in startup, output
    assert "did you mean" in startup.lower(), output
    assert "base_url" in startup.replace("baseurl", ""), output


@pytest.fixture(scope="module")
def failing_apps(
    tmp_path_factory: pytest.TempPathFactory, gateway: FakeGateway
) -> Iterator[dict[str, ServerProcess]]:
    folder = tmp_path_factory.mktemp("failing_apps")
    write_module(folder, "failing_apps", FAILING_APPS)
    env = {"AIGW_BASE_URL": gateway.base_url}
    servers: dict[str, ServerProcess] = {}
    ports = {name: free_port() for name in ("fastapi_app", "starlette_app")}
    with (
        running(
            uvicorn("failing_apps:fastapi_app", ports["fastapi_app"], "--app-dir", str(folder)),
            port=ports["fastapi_app"],
            env=env,
        ) as servers["fastapi_app"],
        running(
            uvicorn("failing_apps:starlette_app", ports["starlette_app"], "--app-dir", str(folder)),
            port=ports["starlette_app"],
            env=env,
        ) as servers["starlette_app"],
    ):
        yield servers


@pytest.mark.parametrize("app", ["fastapi_app", "starlette_app"])
def test_an_unhandled_exception_answers_500_with_the_request_id(
    failing_apps: dict[str, ServerProcess], app: str
) -> None:
    server = failing_apps[app]

    # uvicorn closes the connection after an unhandled exception: one connection per request.
    failed = httpx.get(f"{server.base_url}/boom", headers={"X-AI-Request-Id": f"e2e-500-{app}"})
    generated = httpx.get(f"{server.base_url}/boom")
    fine = httpx.get(f"{server.base_url}/", headers={"X-AI-Request-Id": f"e2e-200-{app}"})

    assert failed.status_code == 500
    assert failed.headers["x-ai-request-id"] == f"e2e-500-{app}"
    assert generated.status_code == 500
    assert generated.headers["x-ai-request-id"]
    assert fine.headers.get_list("x-ai-request-id") == [f"e2e-200-{app}"]
    assert "the view failed" in server.output or "the endpoint failed" in server.output
