"""The README's Python blocks run as written.

Every block compiles and names nothing it does not define or import (ruff's F821). Every block
that is not a piece of a bigger project runs, in one subprocess, against a FakeGateway that
``AIGW_BASE_URL`` points at; a block that continues an earlier one runs after it, and a block
that only defines things gets a few lines that use them (``Plan.epilogue``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUFF = Path(sys.executable).with_name("ruff")

_PIECES = re.compile(
    r"^(#{2,3}) (?P<heading>.+?)$|^```(?P<lang>\w*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    line: int
    heading: str
    code: str

    @property
    def id(self) -> str:
        return f"L{self.line} {self.heading}"


@cache
def python_blocks() -> tuple[Block, ...]:
    text = README.read_text(encoding="utf-8")
    blocks, heading = [], ""
    for match in _PIECES.finditer(text):
        if match["heading"]:
            heading = match["heading"]
        elif match["lang"] == "python":
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(line, heading, match["code"]))
    return tuple(blocks)


def blocks_containing(marker: str) -> list[Block]:
    return [block for block in python_blocks() if marker in block.code]


def the_block_containing(marker: str) -> Block:
    [block] = blocks_containing(marker)
    return block


@dataclass(frozen=True)
class Plan:
    """How a block that is part of a bigger program runs: code before it and code after it."""

    prelude: str = ""
    epilogue: str = ""


# A minimal Django project for the blocks that are a project's views or settings.
DJANGO = """
import os
import django
from django.conf import settings
if not settings.configured:
    settings.configure(
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["aigw_middleware.django"],
        AIGW={"BASE_URL": os.environ["AIGW_BASE_URL"]},
    )
    django.setup()
from django.test import RequestFactory
"""
FLASK_APP = "from flask import Flask\napp = Flask(__name__)\n"
DRIVE_FASTAPI = """
import asyncio
import httpx

async def _drive():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        response = await http.get("/summary", params={"text": "hi"})
    assert response.status_code == 200, response.text
    assert response.headers["x-ai-request-id"]

asyncio.run(_drive())
"""

# Blocks that are a piece of a project this test does not have: compiled and linted only.
NOT_RUN: dict[str, str] = {
    "from flask_login import current_user": "needs flask-login, not one of the dev extras",
    "from django.core.asgi import get_asgi_application": "a project's asgi.py: needs its settings",
    "# proj/celery.py: the module": "a module of a Celery project: needs its broker config",
    "# proj/tasks.py": "imports the project's Celery app",
    "# proj/celery.py, after install(app)": "continues the project's celery.py",
}


def plans() -> dict[str, Plan]:
    """Plans by a marker: every block containing the marker runs with that plan."""
    return {
        "# views.py: no correlation code of its own": Plan(
            prelude=DJANGO,
            epilogue=(
                "response = summarise(RequestFactory().get('/summarise', {'text': 'hi'}))\n"
                "assert response.status_code == 200, response.content\n"
            ),
        ),
        "def stream_async(request):": Plan(
            prelude=DJANGO,
            epilogue=(
                "import asyncio\n"
                "assert b''.join(stream(RequestFactory().get('/')).streaming_content)\n"
                "async def _consume():\n"
                "    body = (await stream_async(RequestFactory().get('/'))).streaming_content\n"
                "    return [part async for part in body]\n"
                "assert asyncio.run(_consume())\n"
            ),
        ),
        # Django creates its loggers before it reads LOGGING; they must keep working.
        'LOGGING = {\n    "version": 1,': Plan(
            prelude="import logging\nlogging.getLogger('django.request')\n",
            epilogue=(
                "import logging.config\n"
                "logging.config.dictConfig(LOGGING)\n"
                "assert not logging.getLogger('django.request').disabled\n"
            ),
        ),
        # The per-call lines the README promises are INFO records.
        "handler.addFilter(CorrelationFilter())\nhandler.setFormatter": Plan(
            epilogue="assert logging.getLogger('aigw_middleware').isEnabledFor(logging.INFO)\n"
        ),
        "# Django settings.py": Plan(
            epilogue=(
                "from aigw_middleware import GatewayConfig\n"
                "GatewayConfig.from_mapping(AIGW, environ={})\n"
            )
        ),
        "# Flask, where the app is created": Plan(
            prelude=FLASK_APP,
            epilogue="from aigw_middleware.flask import AIGateway\nAIGateway(app)\n",
        ),
        "aigw = AIGateway(tenant_resolver=resolve_tenant)": Plan(
            epilogue=(
                "import os\n"
                "app = create_app({'AIGW_BASE_URL': os.environ['AIGW_BASE_URL']})\n"
                "assert app.test_client().get('/').headers['X-AI-Request-Id']\n"
            )
        ),
        '@app.get("/summary")\ndef summary():': Plan(
            prelude=the_block_containing('app.config["AIGW_BASE_URL"] = ').code
        ),
        '@app.get("/stream")\ndef stream():': Plan(
            prelude=the_block_containing('app.config["AIGW_BASE_URL"] = ').code
        ),
        "app.add_middleware(AIGatewayMiddleware)  ": Plan(epilogue=DRIVE_FASTAPI),
        "def tenant_and_team(scope):": Plan(
            prelude=the_block_containing("app.add_middleware(AIGatewayMiddleware)  ").code
        ),
        'extra_headers={"X-AI-Tenant": "batch-import"}': Plan(
            prelude=the_block_containing("client = OpenAI()").code
        ),
        "# proj/celery.py, after install(app)": Plan(
            prelude=the_block_containing("# proj/celery.py: the module").code
        ),
        "def test_calls_carry_the_tenant(fake_gateway):": Plan(
            epilogue=(
                "from aigw_middleware.testing import FakeGateway\n"
                "with FakeGateway() as gateway:\n"
                "    test_calls_carry_the_tenant(gateway)\n"
            )
        ),
    }


#: Blocks that must reach the gateway when they run: they call it, as the README says.
CALLS_THE_GATEWAY = (
    "client = get_client()",
    "async def main():",
    "# views.py: no correlation code of its own",
    "def stream_async(request):",
    "app.add_middleware(AIGatewayMiddleware)  ",
    "client = OpenAI()",
    'extra_headers={"X-AI-Tenant": "batch-import"}',
    "def work(topic=",
)


def plan_for(block: Block) -> Plan:
    found = [plan for marker, plan in plans().items() if marker in block.code]
    assert len(found) <= 1, f"{block.id}: more than one plan matches"
    return found[0] if found else Plan()


def not_run_reason(block: Block) -> str | None:
    return next((reason for marker, reason in NOT_RUN.items() if marker in block.code), None)


# Runs each block in order in a fresh namespace (after its prelude, before its epilogue) and
# reports, per block, the error if any and how many requests the gateway received meanwhile.
RUNNER = r"""
import json, os, sys, traceback
from aigw_middleware.testing import FakeGateway

gateway = FakeGateway().start()
os.environ["AIGW_BASE_URL"] = gateway.base_url
results = {}
for item in json.load(sys.stdin):
    before = len(gateway.requests)
    namespace = {"__name__": "readme_block"}
    try:
        for part in (item["prelude"], item["code"], item["epilogue"]):
            exec(compile(part, item["id"], "exec"), namespace)
        error = None
    except BaseException:
        error = traceback.format_exc()
    results[item["id"]] = {"error": error, "calls": len(gateway.requests) - before}
gateway.stop()
with open(sys.argv[1], "w") as out:
    json.dump(results, out)
"""


def run_results(tmp: Path) -> tuple[dict[str, Any], str]:
    """Per block id, its error and its gateway calls; and the runner's output, for failures."""
    items = [
        {"id": block.id, "code": block.code, **vars(plan_for(block))}
        for block in python_blocks()
        if not_run_reason(block) is None
    ]
    environ = {
        "PATH": "/usr/bin:/bin",
        "OPENAI_API_KEY": "sk-readme-test",
        "LITELLM_KEY": "sk-readme-test",
        "PYTHONPATH": str(ROOT),
    }
    out = tmp / "results.json"
    finished = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, str(out)],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=tmp,
        check=False,
    )
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return results, f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"


@pytest.fixture(scope="module")
def block_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return run_results(tmp_path_factory.mktemp("readme"))


BLOCKS = python_blocks()
IDS = [block.id for block in BLOCKS]
RUNNABLE = [block for block in BLOCKS if not_run_reason(block) is None]


def test_the_readme_has_python_blocks_and_every_marker_matches_one() -> None:
    assert len(BLOCKS) > 30
    for marker in [*NOT_RUN, *plans(), *CALLS_THE_GATEWAY]:
        assert blocks_containing(marker), f"no README block contains {marker!r}"


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec")


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_block_names_nothing_undefined(block: Block) -> None:
    plan = plan_for(block)
    source = f"{plan.prelude}\n{block.code}"
    linted = subprocess.run(
        [
            str(RUFF),
            "check",
            "--no-cache",
            "--select",
            "F821",
            "--output-format",
            "concise",
            "--stdin-filename",
            "readme_block.py",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert linted.returncode == 0, f"{block.id}:\n{linted.stdout}{linted.stderr}"


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_block_runs_against_the_fake_gateway(
    block: Block, block_results: tuple[dict[str, Any], str]
) -> None:
    results, output = block_results
    assert block.id in results, f"the runner did not finish:\n{output}"
    result = results[block.id]

    assert result["error"] is None, f"{block.id} failed:\n{result['error']}"
    if any(marker in block.code for marker in CALLS_THE_GATEWAY):
        assert result["calls"] > 0, f"{block.id} never reached the gateway"
