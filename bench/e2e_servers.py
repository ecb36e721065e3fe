"""How bench/e2e.py's servers start: the same in both servers of a pair, with and without the
middleware.

Each freezes its start-up heap (``gc.freeze()``) once the app is loaded, as servers that fork
often do: the collector then leaves the frameworks' objects alone. Without it, a full
collection scanned the 60,000 objects the imports left (50 to 75 ms on the benchmark machine)
about every 20 seconds, and whichever server of the pair had one during the measured seconds
set the ratio of their p99: from 0.39x to 3.6x in one series of the same code.

- gunicorn: ``-c python:bench.e2e_servers`` (``post_worker_init``, after the worker loaded the
  app)
- uvicorn: ``--factory bench.e2e_servers:asgi_baseline`` or ``:asgi_correlated``
"""

from __future__ import annotations

import gc
from typing import Any


def freeze_heap() -> None:
    """Move every object alive now out of the collector's view."""
    gc.collect()
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """gunicorn's hook, called once the worker has loaded the app."""
    freeze_heap()


def asgi_correlated() -> Any:
    """The ASGI example as it is."""
    from example_asgi.app import app

    freeze_heap()
    return app


def asgi_baseline() -> Any:
    """The ASGI example without AIGatewayMiddleware: the no-correlation server. Starlette builds
    its middleware stack at the first request, so removing the entry leaves the app exactly as
    the example, less the correlation layer."""
    from aigw_middleware.asgi import AIGatewayMiddleware
    from example_asgi.app import app

    app.user_middleware = [
        entry for entry in app.user_middleware if entry.cls is not AIGatewayMiddleware
    ]
    freeze_heap()
    return app
