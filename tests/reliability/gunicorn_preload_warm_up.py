"""gunicorn settings for the fork check: the master calls the gateway just before each fork.

With ``--preload`` the app is loaded in the master; ``pre_fork`` runs there right before each
worker is forked, so every worker starts with the master's shared client and its pooled
connections still fresh (the pool keeps idle connections for 5 seconds), as an app that checks
its gateway at start-up would. Eight calls at once leave eight connections in the pool.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

WARM_UP_REQUEST_ID = "preload-warm-up"
CONNECTIONS = 8


def pre_fork(server: Any, worker: Any) -> None:
    from aigw_middleware import bind_context, get_client

    def warm_up(_: int) -> None:
        with bind_context(request_id=WARM_UP_REQUEST_ID):
            get_client().models.list()

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(warm_up, range(CONNECTIONS)))
