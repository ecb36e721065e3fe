#!/usr/bin/env bash
# Installs redis-server for the Celery end-to-end tests (tests/e2e/test_celery_worker.py), which
# start their own server on a free loopback port. Quiet when redis-server is already on PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    # sudo drops the environment, so the non-interactive frontend is passed as an argument.
    SUDO=(sudo DEBIAN_FRONTEND=noninteractive)
else
    echo "redis-server is missing and this user cannot install it: install the redis-server package" >&2
    exit 1
fi

echo "== installing redis-server"
export DEBIAN_FRONTEND=noninteractive
# apt prints progress and debconf notes even with -qq: show them only when something fails.
if ! out=$("${SUDO[@]}" apt-get update -qq 2>&1 \
    && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server 2>&1); then
    echo "$out" >&2
    exit 1
fi
# The package may start a system-wide service on 6379; the tests never use it.
command -v redis-server >/dev/null || { echo "redis-server is still not on PATH" >&2; exit 1; }
