#!/usr/bin/env bash
# Creates or updates .venv-openai3: the package with the openai 3.x SDK (built on httpx2), so that
# tests/test_openai.py can run once per SDK generation. Re-installs only when pyproject.toml or
# this script changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
venv=.venv-openai3
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.aigw-installed"
want=$(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== installing the openai 3.x test venv ($venv)"
    # The editable build prints setuptools notices even with --quiet: show them only on failure.
    if ! out=$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 \
        && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -e . "openai>=3,<4" "pytest>=8.4" "pytest-asyncio>=1.4" 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
