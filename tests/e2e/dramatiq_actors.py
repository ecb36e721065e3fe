"""The actors of the Dramatiq end-to-end test, on a Redis broker, as a project would define
them; the ``dramatiq tests.e2e.dramatiq_actors:broker`` worker processes import this module.

The broker URL comes from ``DRAMATIQ_E2E_REDIS``, set by the test before it imports it.
"""

from __future__ import annotations

import os
import threading

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from aigw_middleware import get_client
from aigw_middleware.dramatiq import CorrelationMiddleware

BROKER_ENV = "DRAMATIQ_E2E_REDIS"
QUEUE = "aigw-e2e"

broker = RedisBroker(url=os.environ[BROKER_ENV])
broker.add_middleware(CorrelationMiddleware())


@dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
def summarize(label: str) -> None:
    """What a view hands to the worker: one gateway call whose prompt is the message's label;
    which worker process and thread ran it goes in the body's metadata."""
    get_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": label}],
        metadata={"worker": f"{os.getpid()}/{threading.get_ident()}"},
    )


@dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=50)
def fail_once(label: str, marker_key: str) -> None:
    """Calls the gateway, then fails on its first run only (a Redis key remembers the run)."""
    summarize.fn(label)
    with redis.Redis.from_url(os.environ[BROKER_ENV]) as connection:
        if connection.set(marker_key, 1, nx=True):
            raise RuntimeError("first run fails")
