#!/usr/bin/env bash
# Installs the open-source Portkey AI gateway (npm @portkey-ai/gateway, pinned) into .cache/portkey
# for the end-to-end tests in tests/e2e/test_portkey.py, which start it on a free loopback port.
# Installs Node.js first when `node` is missing. Quiet when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

GATEWAY_VERSION=1.15.2
# The gateway package allows any @hono/node-server 1.x; from 1.14 on, every streamed completion
# fails with "TypeError: immutable" (Portkey-AI/gateway#1389). These are the versions in the
# gateway's own lockfile for this release.
PINS=(
    "@portkey-ai/gateway@${GATEWAY_VERSION}"
    "@hono/node-server@1.13.5"
    "@hono/node-ws@1.2.0"
)
PREFIX=.cache/portkey
STAMP="$PREFIX/.installed"
ENTRY="$PREFIX/node_modules/@portkey-ai/gateway/build/start-server.js"

if [ -f "$ENTRY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "${PINS[*]}" ] && command -v node >/dev/null 2>&1; then
    exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    # shellcheck source=../lib/apt-install.sh
    source scripts/lib/apt-install.sh
    apt_install Node.js nodejs npm
fi

echo "== installing ${PINS[*]} into $PREFIX"
mkdir -p "$PREFIX"
# The gateway's only install script runs patch-package, and the published package ships no
# patches: skip it, so the install does the same on every npm version.
npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --ignore-scripts --loglevel=error \
    "${PINS[@]}"
[ -f "$ENTRY" ] || { echo "the Portkey gateway install has no $ENTRY" >&2; exit 1; }
echo "${PINS[*]}" > "$STAMP"
