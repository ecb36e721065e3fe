#!/usr/bin/env bash
# Creates or updates .venv-openai3: the package with the SDKs built on httpx2 (openai 3.x,
# anthropic 1.x and later, LangChain over openai 3.x; requirements/httpx2.txt), so that
# tests/test_openai.py and tests/test_sdk_clients.py run once per SDK generation. Re-installs only
# when pyproject.toml, that file or this script changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
venv=.venv-openai3
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.aigw-installed"
want=$(cat pyproject.toml requirements/httpx2.txt "$0" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== installing the httpx2 SDK generation test venv ($venv)"
    # The editable build prints setuptools notices even with --quiet: show them only on failure.
    if ! out=$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 \
        && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -e . -r requirements/httpx2.txt 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
