"""The unit suite across the supported Python, framework and library versions.

    .venv/bin/nox -l                          # the sessions
    .venv/bin/nox -s oldest-together          # one session; arguments after `--` go to pytest

Each session runs the unit suite (``tests/`` without ``tests/e2e`` and ``tests/reliability``,
which need real servers, and without the docs and typing checks, which need the development
tools) in its own virtualenv under
``.nox/``. A virtualenv is reused as long as its pins, ``pyproject.toml`` and
``requirements/test.txt`` are unchanged; newest-together also re-resolves once a day, to pick up
new releases. Interpreters come from pyenv where it is installed, else from PATH; a session whose
Python is missing is skipped with a message that says so.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nox
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox itself depends on tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TEST_REQUIREMENTS = "requirements/test.txt"
EXTRAS = ("django", "flask", "openai", "celery")
PACKAGE_WITH_EXTRAS = f".[{','.join(EXTRAS)}]"
# Shown at the start of each session: what the suite actually ran against.
REPORTED = ("django", "flask", "werkzeug", "httpx", "openai", "celery", "kombu")
REPORTED += ("pytest", "pytest-asyncio", "pytest-django", "starlette", "fastapi", "structlog")
# The docs and typing checks run ruff and mypy, development tools of .venv: the main suite runs
# them, on the development versions.
UNIT_SUITE = (
    "tests",
    "--ignore=tests/e2e",
    "--ignore=tests/reliability",
    "--ignore=tests/test_docs.py",
    "--ignore=tests/test_typing.py",
)

# Pinned with the floors: releases that an old framework needs and does not cap. Flask 2.3's test
# client reads werkzeug.__version__, which Werkzeug 3.1 removed.
OLDEST_CONTEMPORARIES = ["werkzeug==2.3.0"]

nox.options.reuse_venv = "yes"
nox.options.download_python = "never"


def requirement_lines(path: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / path).read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def pinned_to_floor(requirement: Requirement) -> str:
    """``name==floor``; a requirement pinned with ``==`` is its own floor."""
    floors = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==")]
    if len(floors) != 1:
        raise ValueError(f"{requirement} must declare one floor (>= or ==) for oldest-together")
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras}=={floors[0]}"


def declared_floors() -> list[str]:
    """Every requirement of the package, its extras and the unit suite, pinned to its floor."""
    declared = list(PYPROJECT["dependencies"])
    for extra in EXTRAS:
        declared += PYPROJECT["optional-dependencies"][extra]
    declared += requirement_lines(TEST_REQUIREMENTS)
    return [pinned_to_floor(Requirement(line)) for line in declared]


def oldest_python() -> str:
    match = re.fullmatch(r">=\s*(3\.\d+)", PYPROJECT["requires-python"])
    if match is None:
        raise ValueError(f"requires-python {PYPROJECT['requires-python']!r} is not '>=3.N'")
    return match.group(1)


def pyenv_root() -> Path | None:
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    if pyenv := shutil.which("pyenv"):
        result = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            return Path(result.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def find_python(version: str) -> str | None:
    """The newest pyenv-installed CPython ``version``.x, else ``python{version}`` on PATH."""
    if root := pyenv_root():
        installed = []
        for executable in (root / "versions").glob(f"{version}.*/bin/python{version}"):
            patch = executable.parents[1].name.removeprefix(f"{version}.")
            if patch.isdigit():
                installed.append((int(patch), executable))
        if installed:
            return str(max(installed)[1])
    return shutil.which(f"python{version}")


def log_versions(session: nox.Session) -> None:
    """One line naming what the suite runs against, for the table in the README."""
    python = session.run(
        "python", "-c", "import platform; print(platform.python_version())", silent=True
    )
    freeze = session.run("python", "-m", "pip", "list", "--format=freeze", silent=True)
    installed = dict(
        line.lower().split("==", 1) for line in str(freeze).splitlines() if "==" in line
    )
    versions = " ".join(f"{name} {installed.get(name, '-')}" for name in REPORTED)
    session.log(f"versions: python {str(python).strip()} {versions}")


def install(session: nox.Session, pins: list[str], refresh_daily: bool) -> None:
    """Installs the package with every extra, the unit suite's needs and ``pins``, once."""
    stamp = Path(session.virtualenv.location) / ".aigw-installed"
    key = [*pins, (ROOT / "pyproject.toml").read_text(), (ROOT / TEST_REQUIREMENTS).read_text()]
    if refresh_daily:
        key.append(datetime.date.today().isoformat())
    want = hashlib.sha256("\n".join(key).encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == want:
        session.log("pins unchanged: reusing the virtualenv as installed")
        return
    upgrade = ["--upgrade"] if refresh_daily else []
    session.install("--quiet", "--upgrade", "pip")
    session.install("--quiet", *upgrade, "-e", PACKAGE_WITH_EXTRAS, "-r", TEST_REQUIREMENTS, *pins)
    stamp.write_text(want)


def define(
    name: str, python: str, pins: list[str], summary: str, refresh_daily: bool = False
) -> None:
    interpreter = find_python(python)

    def run_unit_suite(session: nox.Session) -> None:
        if interpreter is None:
            session.skip(
                f"Python {python} not found: install it with pyenv (`pyenv install {python}`) "
                f"or put python{python} on PATH"
            )
        install(session, pins, refresh_daily)
        log_versions(session)
        # Arguments after `--` replace the unit suite: `nox -s oldest-together -- tests/test_flask.py`.
        targets = session.posargs or UNIT_SUITE
        session.run("python", "-m", "pytest", "-q", *targets)

    run_unit_suite.__doc__ = summary
    session: Callable[..., object] = nox.session(name=name, python=interpreter or False)
    session(run_unit_suite)


define(
    "oldest-together",
    oldest_python(),
    [*declared_floors(), *OLDEST_CONTEMPORARIES],
    f"Python {oldest_python()} and every declared floor: {', '.join(declared_floors())}",
)
define(
    "newest-together",
    "3.13",
    [],
    "Python 3.13 and the newest release of everything (re-resolved once a day)",
    refresh_daily=True,
)
define("py3.11-django5.1", "3.11", ["django~=5.1.0"], "Python 3.11, Django 5.1, the rest newest")
define("py3.12-django5.2", "3.12", ["django~=5.2.0"], "Python 3.12, Django 5.2, the rest newest")
define("py3.12-django6.0", "3.12", ["django~=6.0.0"], "Python 3.12, Django 6.0, the rest newest")
define("py3.13-celery5.3", "3.13", ["celery==5.3"], "Python 3.13, Celery 5.3, the rest newest")
