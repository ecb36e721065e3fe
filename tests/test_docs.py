"""The Python blocks of the README and of the documentation site (``docs/``) run as written.

Every block compiles and names nothing it does not define or import (ruff's F821). Every block
that is not a fragment runs, in one subprocess, against a FakeGateway that ``AIGW_BASE_URL``
points at; a block that continues an earlier one runs after it, and a block that only defines
things gets a few lines that use them (``Plan.epilogue``).

A fragment is a piece of a bigger project that this test does not have (a project's ``asgi.py``,
a module that imports the project's Celery app): the line right above its fence is an HTML
comment, invisible on the site, that says why, ``<!-- fragment: needs flask-login -->``.
Fragments are compiled and linted only.
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
DOCS = ROOT / "docs"
RUFF = Path(sys.executable).with_name("ruff")

# A heading, or a fenced block (indented inside a tab or an admonition) with its language.
_PIECES = re.compile(
    r"^(?P<hashes>#{1,6}) (?P<heading>.+?)$"
    r"|^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
_FRAGMENT = re.compile(r"<!-- fragment: (?P<reason>[^>]+?) -->")


def pages() -> list[Path]:
    """The README and every page of the site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    heading: str
    code: str
    #: Why the block does not run, for a fragment; None for a block that runs.
    fragment: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line} {self.heading}"


def _dedent(code: str, indent: str) -> str:
    return "".join(line.removeprefix(indent) for line in code.splitlines(keepends=True))


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    page = path.relative_to(ROOT).as_posix()
    blocks, heading = [], ""
    for match in _PIECES.finditer(text):
        if match["heading"]:
            heading = match["heading"]
        elif match["lang"] in ("python", "py"):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
            fragment = _FRAGMENT.fullmatch(before)
            blocks.append(
                Block(
                    page,
                    line,
                    heading,
                    _dedent(match["code"], match["indent"]),
                    fragment["reason"] if fragment else None,
                )
            )
    return blocks


@cache
def python_blocks() -> tuple[Block, ...]:
    return tuple(block for path in pages() for block in page_blocks(path))


def blocks_containing(marker: str) -> list[Block]:
    return [block for block in python_blocks() if marker in block.code]


def the_block_containing(marker: str, page: str | None = None) -> Block:
    """The one block (of ``page``, if given) that contains ``marker``."""
    [block] = [block for block in blocks_containing(marker) if page in (None, block.page)]
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
FLASK_PAGE = "docs/frameworks/flask.md"
FASTAPI_SUMMARY = '@app.get("/summary")\nasync def summary(text: str):'
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
        # The per-call lines the docs promise are INFO records.
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
            prelude=the_block_containing('app.config["AIGW_BASE_URL"] = ', FLASK_PAGE).code
        ),
        '@app.get("/stream")\ndef stream():': Plan(
            prelude=the_block_containing('app.config["AIGW_BASE_URL"] = ', FLASK_PAGE).code
        ),
        FASTAPI_SUMMARY: Plan(epilogue=DRIVE_FASTAPI),
        "def tenant_and_team(scope):": Plan(prelude=the_block_containing(FASTAPI_SUMMARY).code),
        'extra_headers={"X-AI-Tenant": "batch-import"}': Plan(
            prelude=the_block_containing("client = OpenAI()").code
        ),
        "# proj/celery.py, after install(app)": Plan(
            prelude=the_block_containing("# proj/celery.py: the module").code
        ),
        "def test_the_gateway_gets_the_request_id_and_the_tenant(fake_gateway):": Plan(
            epilogue=(
                "from aigw_middleware.testing import FakeGateway\n"
                "with FakeGateway() as gateway:\n"
                "    test_the_gateway_gets_the_request_id_and_the_tenant(gateway)\n"
            )
        ),
        "def test_calls_carry_the_tenant(fake_gateway):": Plan(
            epilogue=(
                "from aigw_middleware.testing import FakeGateway\n"
                "with FakeGateway() as gateway:\n"
                "    test_calls_carry_the_tenant(gateway)\n"
            )
        ),
    }


#: Blocks that must reach the gateway when they run: they call it, as their page says.
CALLS_THE_GATEWAY = (
    "client = get_client()",
    "async def main():",
    "# views.py: no correlation code of its own",
    "def stream_async(request):",
    FASTAPI_SUMMARY,
    "client = OpenAI()",
    'extra_headers={"X-AI-Tenant": "batch-import"}',
    "def work(topic=",
    '@bind_context(tenant="acme")\ndef main():',
    "print(answer.content, answer.request_id",
)


def plan_for(block: Block) -> Plan:
    found = [plan for marker, plan in plans().items() if marker in block.code]
    assert len(found) <= 1, f"{block.id}: more than one plan matches"
    return found[0] if found else Plan()


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
    namespace = {"__name__": "docs_block"}
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
        if block.fragment is None
    ]
    environ = {
        "PATH": "/usr/bin:/bin",
        "OPENAI_API_KEY": "sk-docs-test",
        "LITELLM_KEY": "sk-docs-test",
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
    return run_results(tmp_path_factory.mktemp("docs"))


BLOCKS = python_blocks()
IDS = [block.id for block in BLOCKS]
RUNNABLE = [block for block in BLOCKS if block.fragment is None]


def test_the_pages_have_python_blocks_and_every_marker_matches_one() -> None:
    assert len(RUNNABLE) > 40
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/index.md"}
    for marker in [*plans(), *CALLS_THE_GATEWAY]:
        assert blocks_containing(marker), f"no Python block contains {marker!r}"


def test_a_fragment_comment_stands_right_above_a_python_block() -> None:
    """A fragment marker that drifted away from its block would let the block run unnoticed."""
    for path in pages():
        text = path.read_text(encoding="utf-8")
        fences = [m.span() for m in _PIECES.finditer(text) if m["code"] is not None]
        for match in _FRAGMENT.finditer(text):
            if any(start <= match.start() < end for start, end in fences):
                continue  # shown as an example inside a block
            following = text[match.end() :].lstrip("\n").lstrip(" ")
            assert following.startswith(("```python", "```py\n")), (
                f"{path.relative_to(ROOT)}: {match[0]} is not right above a Python block"
            )


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
            "docs_block.py",
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


# Docstrings: the API reference (docs/reference/) is made from them. -------------------------

DOCSTRINGS_EXTENSION = "docs/extensions/aigw_docstrings.py:AigwDocstrings"


def public_objects() -> list[tuple[str, Any]]:
    """Every public module, each name of its ``__all__`` and the public members of those
    classes, as griffe (and so the reference) sees them: ``(path, griffe object)``."""
    griffe = pytest.importorskip("griffe")
    from tests.test_public_api import PUBLIC

    extensions = griffe.load_extensions(str(ROOT / DOCSTRINGS_EXTENSION))
    package = griffe.load(
        "aigw_middleware", search_paths=[str(ROOT)], extensions=extensions, resolve_aliases=True
    )
    found: dict[str, Any] = {}
    for module_name, names in PUBLIC.items():
        relative = module_name.removeprefix("aigw_middleware").lstrip(".")
        module = package[relative] if relative else package
        found[module_name] = module
        for name in names:
            if name == "__version__":
                continue
            obj = module[name].final_target if module[name].is_alias else module[name]
            found[f"{module_name}.{name}"] = obj
            if not obj.is_class:
                continue
            for member_name, member in obj.all_members.items():
                target = member.final_target if member.is_alias else member
                if not member_name.startswith("_") and target.path.startswith("aigw_middleware"):
                    found[f"{module_name}.{name}.{member_name}"] = target
    return sorted(found.items())


def test_every_public_name_has_a_docstring() -> None:
    objects = public_objects()
    assert len(objects) > 150
    undocumented = [
        path for path, obj in objects if obj.docstring is None or not obj.docstring.value.strip()
    ]
    assert undocumented == [], "public names without a docstring (the API reference needs one)"


def test_a_setting_field_is_documented_by_its_help_text() -> None:
    """The reference shows each GatewayConfig field with the text of the configuration table."""
    from aigw_middleware.config import _SETTINGS

    objects = dict(public_objects())
    for name, setting in _SETTINGS.items():
        docstring = objects[f"aigw_middleware.config.GatewayConfig.{name}"].docstring.value
        assert docstring.lower().rstrip(".") == setting.help.lower(), name


# The README: the package's front page on the index, and the way into the site. -------------

REPO_URL = "https://github.com/aigw-middleware/aigw-middleware/blob/main/"


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text[text.index("```") :].split("\n```\n", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:]]
    assert commands == ["scripts/demo", "scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec scripts/test" in ci


def test_the_readme_links_reach_files_of_the_repository() -> None:
    """Links are absolute (the README is also the long description on the package index) and
    point at files that exist, the site's home page among them."""
    text = README.read_text(encoding="utf-8")
    inline = re.findall(r"\]\(([^)\s]+)", text)
    definitions = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", text, re.M))
    used = set(re.findall(r"\]\[([^\]]+)\]", text))
    assert used <= set(definitions), f"undefined link labels: {used - set(definitions)}"
    targets = inline + list(definitions.values())
    assert not [t for t in targets if not t.startswith(("https://", "#"))], (
        "a relative link breaks on the package index"
    )
    linked = [t.removeprefix(REPO_URL).split("#")[0] for t in targets if t.startswith(REPO_URL)]
    assert "docs/index.md" in linked
    for path in linked:
        assert (ROOT / path).is_file(), f"the README links to {path}, which does not exist"


def test_the_test_command_builds_the_site_strictly() -> None:
    """``mkdocs build --strict --quiet`` passes a broken link (quiet mkdocs counts no warnings),
    so the test command's build must not be quiet."""
    [build] = [
        line
        for line in (ROOT / "scripts" / "test").read_text(encoding="utf-8").splitlines()
        if ".venv/bin/mkdocs build" in line and not line.lstrip().startswith("#")
    ]
    assert "--strict" in build.split()
    assert not {"--quiet", "-q"} & set(build.split())
