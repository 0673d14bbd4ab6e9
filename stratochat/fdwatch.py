"""Says so in the log when the process runs short of file descriptors.

Every socket is a descriptor. At the limit the server cannot accept: uvicorn's loop closes each new
connection at once and logs nothing, so clients see refused sockets and the operator sees nothing.
This checks every few seconds (in a thread: listing 20,000 descriptors takes milliseconds) and warns
from 90% of the soft limit, at most once a minute while it lasts, and once more when it is over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from .core.periodic import Periodic

log = logging.getLogger("stratochat.fdwatch")

WARN_FRACTION = 0.9


def open_files() -> tuple[int | None, int]:
    """(descriptors open, soft limit); (None, 0) where the platform cannot tell (not Linux)."""
    try:
        import resource

        return len(os.listdir("/proc/self/fd")), resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ImportError):
        return None, 0


class FdWatch(Periodic):
    name = "fd-watch"
    failure = "cannot count open files"

    def __init__(
        self,
        interval_s: float = 5.0,
        *,
        count: Callable[[], tuple[int | None, int]] = open_files,
        repeat_s: float = 60.0,
    ) -> None:
        super().__init__(interval_s)
        self._count = count
        self._repeat = repeat_s
        self._warned_at: float | None = None

    async def step(self) -> None:
        used, limit = await asyncio.to_thread(self._count)
        if used is not None:  # None: this platform cannot tell
            self.check(used, limit)

    def check(self, used: int, limit: int) -> None:
        now = time.monotonic()
        if limit > 0 and used >= limit * WARN_FRACTION:
            if self._warned_at is None or now - self._warned_at >= self._repeat:
                self._warned_at = now
                log.warning(
                    "running out of file descriptors: %d of %d open; new connections fail at the limit"
                    " (raise LimitNOFILE / ulimit -n)",
                    used,
                    limit,
                    extra={"open_files": used, "limit": limit},
                )
        elif self._warned_at is not None:
            self._warned_at = None
            log.warning("file descriptors back below 90%% of the limit: %d of %d open", used, limit)
