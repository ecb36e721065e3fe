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
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e . "openai>=3,<4" "pytest>=8" "pytest-asyncio>=0.23"
    echo "$want" > "$stamp"
fi
