"""The jobs of the RQ end-to-end test, imported by name by the ``rq worker`` processes."""

from __future__ import annotations

from aigw_middleware import current_context, get_client


def summarize(label: str) -> str:
    """What a view hands to the worker: one gateway call whose prompt is the job's label."""
    get_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": label}]
    )
    context = current_context()
    assert context is not None
    return context.request_id


def fail_once(label: str, marker_key: str, redis_url: str) -> str:
    """Calls the gateway, then fails on its first run only (a Redis key remembers the run)."""
    import redis

    summarize(label)
    with redis.Redis.from_url(redis_url) as connection:
        if connection.set(marker_key, 1, nx=True):
            raise RuntimeError("first run fails")
    return "done"
