"""Resources of this process: threads, sockets, file descriptors and memory (Linux /proc)."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


def socket_fds() -> list[int]:
    """The file descriptors of this process that are sockets (Linux: /proc/self/fd)."""
    found = []
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(entry).startswith("socket:"):
                found.append(int(entry.name))
    return found


def open_sockets() -> int:
    """How many sockets this process has open."""
    return len(socket_fds())


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    """The resident set size of this process now (Linux: VmRSS of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


@dataclass(frozen=True)
class Resources:
    threads: int
    sockets: int
    fds: int

    @classmethod
    def now(cls) -> Resources:
        return cls(threading.active_count(), open_sockets(), open_fds())

    def within(self, baseline: Resources) -> bool:
        return (
            self.threads <= baseline.threads
            and self.sockets <= baseline.sockets
            and self.fds <= baseline.fds
        )


@contextlib.contextmanager
def nothing_left_behind(settle: float = 5.0) -> Iterator[Callable[[], Resources]]:
    """Asserts that the block leaves no thread, socket or file descriptor open.

    Servers' connection threads finish shortly after a client closes; the counts may take up
    to ``settle`` seconds to come back. The yielded callable returns the counts at the end.
    """
    gc.collect()
    baseline = Resources.now()
    after = baseline
    yield lambda: after
    deadline = time.monotonic() + settle
    while True:
        gc.collect()
        after = Resources.now()
        if after.within(baseline) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after.within(baseline), f"left behind: before {baseline}, after {after}"
