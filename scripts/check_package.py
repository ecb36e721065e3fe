"""The release check: build the sdist and the wheel, check them, install the wheel with no extras.

1. ``python -m build`` makes the sdist, then the wheel from the unpacked sdist (so a file missing
   from the sdist fails the wheel too); ``twine check --strict`` checks both.
2. The archives hold the LICENSE, ``py.typed`` and every module tracked under
   ``aigw_middleware/``, and no tests; the metadata has the extras and no ``dev`` extra, the
   classifiers of every supported Python, the integrated frameworks and a development status,
   and the README as a Markdown long description.
3. The wheel goes into a new virtualenv with no extras: every module that needs no framework
   imports, and each framework module raises the documented ImportError naming its extra.

    scripts/check-package          # exits 0 when every check passes
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "aigw_middleware"
DIST_NAME = "aigw-middleware"
# Each framework module and the extra whose absence it reports; submodules of a framework package
# (aigw_middleware.django.apps, ...) raise the same error.
FRAMEWORK_EXTRAS = {
    "django": "django",
    "flask": "flask",
    "openai": "openai",
    "celery": "celery",
    "rq": "rq",
    "dramatiq": "dramatiq",
}

# Runs inside the clean virtualenv: imports every module of the installed wheel and prints, per
# module, "ok" or the ImportError's message. Framework packages must not be importable there.
PROBE = """
import importlib, importlib.metadata, importlib.util, json, sys
dist, package = sys.argv[1:]
frameworks = [name for name in ("django", "flask", "openai", "celery", "rq", "dramatiq", "pytest")
              if importlib.util.find_spec(name) is not None]
modules = sorted(
    ".".join(path.with_suffix("").parts).removesuffix(".__init__")
    for path in importlib.metadata.files(dist) if path.suffix == ".py"
)
results = {}
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        results[module] = str(exc)
    else:
        results[module] = "ok"
print(json.dumps({
    "frameworks_installed": frameworks,
    "modules": results,
    "version": importlib.import_module(package).__version__,
    "metadata_version": importlib.metadata.version(dist),
}))
"""


class CheckFailed(Exception):
    pass


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    """Runs a command; its output is shown only when it fails."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise CheckFailed(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def build(outdir: Path) -> tuple[Path, Path]:
    # --no-isolation: the build requirement (setuptools) is in .venv, so no download per run.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", outdir, ".")
    (sdist,) = outdir.glob("*.tar.gz")
    (wheel,) = outdir.glob("*.whl")
    print(f"built {sdist.name} and {wheel.name}")
    return sdist, wheel


def tracked_package_files() -> set[str]:
    listed = run("git", "ls-files", "--", PACKAGE).splitlines()
    return {name for name in listed if (ROOT / name).is_file() and not name.endswith(".pyc")}


def check_contents(sdist: Path, wheel: Path) -> None:
    with tarfile.open(sdist) as archive:
        sdist_files = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        wheel_files = set(archive.namelist())
        (metadata_name,) = (n for n in wheel_files if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())

    problems = []
    package_files = tracked_package_files()
    for name in sorted({"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} - sdist_files):
        problems.append(f"the sdist has no {name}")
    for name in sorted(package_files - sdist_files):
        problems.append(f"the sdist has no {name}")
    for name in sorted(package_files - wheel_files):
        problems.append(f"the wheel has no {name}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_files):
        problems.append("the wheel has no LICENSE")
    for where, files in (("sdist", sdist_files), ("wheel", wheel_files)):
        shipped_tests = sorted(n for n in files if n.startswith("tests/"))
        if shipped_tests:
            problems.append(f"the {where} ships part of tests/: {shipped_tests}")

    extras = set(metadata.get_all("Provides-Extra") or [])
    if missing := set(FRAMEWORK_EXTRAS.values()) - extras:
        problems.append(f"the metadata lacks the extras {sorted(missing)}")
    if "dev" in extras:
        problems.append("the metadata still publishes a 'dev' extra")
    if metadata["License-Expression"] != "MIT":
        problems.append(f"License-Expression is {metadata['License-Expression']!r}, not 'MIT'")
    if not metadata.get_all("Project-URL"):
        problems.append("the metadata has no Project-URL")
    problems += unknown_classifiers(metadata.get_all("Classifier") or [])
    problems += missing_classifiers(metadata.get_all("Classifier") or [])
    if metadata["Description-Content-Type"] != "text/markdown":
        problems.append("the long description (README.md) is not declared as text/markdown")
    if problems:
        raise CheckFailed("\n".join(problems))
    print(f"contents: {len(wheel_files)} files in the wheel, extras {sorted(extras)}")


#: Classifiers the metadata must have: every supported Python (docs/development.md lists the
#: tested versions), the frameworks with an integration, and a development status.
REQUIRED_CLASSIFIERS = (
    *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
    "Framework :: Django",
    "Framework :: Flask",
    "Framework :: Celery",
    "Framework :: FastAPI",
)


def missing_classifiers(classifiers: list[str]) -> list[str]:
    problems = [f"no classifier {c!r}" for c in REQUIRED_CLASSIFIERS if c not in classifiers]
    if not any(c.startswith("Development Status :: ") for c in classifiers):
        problems.append("no 'Development Status' classifier")
    return problems


def unknown_classifiers(classifiers: list[str]) -> list[str]:
    from trove_classifiers import classifiers as known

    return [f"unknown classifier {c!r}" for c in classifiers if c not in known]


def check_clean_install(wheel: Path, workdir: Path) -> None:
    target = workdir / "clean-venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--disable-pip-version-check",
        wheel,
    )
    # Outside the repository, so that the source tree cannot stand in for the installed wheel.
    report = json.loads(run(python, "-c", PROBE, DIST_NAME, PACKAGE, cwd=workdir))

    problems = []
    if report["frameworks_installed"]:
        problems.append(f"a bare install brought in {report['frameworks_installed']}")
    if report["version"] != report["metadata_version"]:
        problems.append(
            f"{PACKAGE}.__version__ is {report['version']}, "
            f"the metadata says {report['metadata_version']}"
        )
    imported = []
    for module, outcome in report["modules"].items():
        parts = module.split(".")
        framework = parts[1] if len(parts) > 1 and parts[1] in FRAMEWORK_EXTRAS else None
        if framework is None:
            if outcome != "ok":
                problems.append(f"{module} does not import without extras: {outcome}")
            else:
                imported.append(module)
            continue
        wanted = f"pip install '{DIST_NAME}[{FRAMEWORK_EXTRAS[framework]}]'"
        if outcome == "ok":
            problems.append(f"{module} imported without its framework")
        elif f"{PACKAGE}.{framework}" not in outcome or wanted not in outcome:
            problems.append(
                f"{module} without its framework should say which module needs what and "
                f"{wanted!r}; it raised: {outcome}"
            )
    problems += check_fake_gateway_command(python, workdir)
    if problems:
        raise CheckFailed("\n".join(problems))
    print(
        f"clean install (no extras): {len(imported)} modules import, "
        f"{len(report['modules']) - len(imported)} framework modules name their extra"
    )


def check_fake_gateway_command(python: Path, workdir: Path) -> list[str]:
    """The documented stand-in gateway command runs from a bare install (no pytest)."""
    usage = run(python, "-m", f"{PACKAGE}.testing", "--help", cwd=workdir)
    return [] if "--port" in usage else [f"python -m {PACKAGE}.testing --help printed: {usage}"]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aigw-package-") as tmp:
        workdir = Path(tmp)
        try:
            sdist, wheel = build(workdir / "dist")
            run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
            print("twine check --strict: passed")
            check_contents(sdist, wheel)
            check_clean_install(wheel, workdir)
        except CheckFailed as failure:
            print(f"package check FAILED:\n{failure}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
