"""The open-source Portkey AI gateway (npm ``@portkey-ai/gateway``) for end-to-end tests.

``scripts/setup.d/40-portkey.sh`` installs it into ``.cache/portkey``; :func:`running_portkey`
starts it on a free loopback port and stops it afterwards. Requests reach an upstream chosen per
call by :func:`upstream_headers`: the ``openai`` provider at a custom host, e.g. a FakeGateway.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from urllib.parse import quote

from .servers import ROOT, ServerProcess, free_port

SETUP_STEP = "scripts/setup.d/40-portkey.sh"
START_SERVER = ROOT / ".cache/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"

# start-server.js has no host option and listens on every interface; this preload turns its
# listen(port) into listen(port, "127.0.0.1").
_LOOPBACK_ONLY = "data:text/javascript," + quote(
    'import net from "node:net";'
    "const listen = net.Server.prototype.listen;"
    "net.Server.prototype.listen = function (...args) {"
    '  if (typeof args[0] === "number" && typeof args[1] !== "string")'
    '    args.splice(1, args[1] === undefined ? 1 : 0, "127.0.0.1");'
    "  return listen.apply(this, args);"
    "};"
)

_ENV = {
    # Replaces Portkey's default list of custom hosts that may be private addresses.
    "TRUSTED_CUSTOM_HOSTS": "127.0.0.1",
    # Portkey sends upstream calls through these when set; the upstream here is on loopback.
    "HTTP_PROXY": "",
    "HTTPS_PROXY": "",
}


class PortkeyMissing(RuntimeError):
    """Node.js or the Portkey gateway is not installed."""


def portkey_argv(port: int) -> list[str]:
    """The command that serves Portkey on 127.0.0.1:``port``; PortkeyMissing if not installed."""
    node = shutil.which("node")
    if node is None or not START_SERVER.is_file():
        missing = "node is not on PATH" if node is None else f"{START_SERVER} does not exist"
        raise PortkeyMissing(
            f"The Portkey gateway is not installed ({missing}): run `bash {SETUP_STEP}` "
            "or scripts/test, which runs it."
        )
    return [node, "--import", _LOOPBACK_ONLY, str(START_SERVER), f"--port={port}", "--headless"]


@contextlib.contextmanager
def running_portkey() -> Iterator[ServerProcess]:
    """Portkey serving on a free loopback port (``server.base_url``), stopped on exit."""
    port = free_port()
    with ServerProcess(portkey_argv(port), port=port, env=_ENV, ready_path="/") as server:
        yield server


def upstream_headers(upstream_base_url: str) -> dict[str, str]:
    """Portkey routing headers: the OpenAI provider at ``upstream_base_url`` (e.g. ``…/v1``)."""
    return {
        "x-portkey-provider": "openai",
        # Portkey appends the endpoint path to this value as it is: no trailing slash.
        "x-portkey-custom-host": upstream_base_url.rstrip("/"),
    }


# Hop-by-hop and framing headers: the front computes its own.
