#!/usr/bin/env bash
# Installs redis-server for the Celery end-to-end tests (tests/e2e/test_celery_worker.py), which
# start their own server on a free loopback port. Quiet when redis-server is already on PATH.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

# shellcheck source=../lib/apt-install.sh
source "$(dirname "$0")/../lib/apt-install.sh"
apt_install redis-server redis-server
# The package may start a system-wide service on 6379; the tests never use it.
command -v redis-server >/dev/null || { echo "redis-server is still not on PATH" >&2; exit 1; }
