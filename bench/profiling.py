"""cProfile of each inbound path and of the outbound call: where a request's time goes.

``python bench/run.py --profile --groups asgi`` prints, per group, the functions with the most
own time for the ``aigw`` variant next to the same request without middleware.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

from bench import inbound, outbound
from bench.measure import Skipped

PROFILED = ("django_wsgi", "django_asgi", "asgi", "starlette", "flask", "outbound")


def top_functions(group: str, name: str, ops: int, limit: int = 14) -> str:
    factories = {**inbound.groups(), **outbound.groups(long_stream=False)}
    made = factories[group][name]()
    if isinstance(made, Skipped):
        return f"{group}/{name}: skipped ({made.reason})"
    try:
        made.check()
        made.run(max(1, ops // 10))
        profiler = cProfile.Profile()
        profiler.enable()
        made.run(ops)
        profiler.disable()
    finally:
        made.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    body = [line.replace(str(inbound.__file__).rsplit("/bench/", 1)[0] + "/", "") for line in lines]
    return f"-- {group}/{name}: {ops} operations\n" + "\n".join(body[-(limit + 1) :])


def print_profiles(settings: Any, groups: tuple[str, ...] = PROFILED) -> None:
    ops = 2000 if settings.mode == "full" else 300
    for group in groups:
        for name in ("baseline", "aigw"):
            print(top_functions(group, name, ops if group != "outbound" else ops // 4))
            print()
