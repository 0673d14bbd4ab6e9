"""How late the event loop runs, and how long the garbage collector stops the process.

Every socket of a node shares one event loop, so a loop turn that runs long delays every frame on it,
and a collection stops the loop and the store's writer at once. Neither shows in a request's log line
or in a profile's averages; both show here, as histograms for ``/metrics``.

The lag is sampled: a timer due every ``interval_s`` records how late it ran (as Node's
``monitorEventLoopDelay`` does). A stall of ``s`` seconds is seen with a chance of about ``s /
interval_s`` and recorded as part of its length; stalls longer than the interval are always seen. The
collector's pauses are timed exactly, through ``gc.callbacks``: two clock reads per collection.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from typing import Any

# Upper bounds, in seconds: from a millisecond (a busy but healthy turn) to seconds (a stopped node).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts per bucket (not cumulative: ``cumulative`` makes Prometheus's), their sum and count."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations at or below it)`` for each bucket, ending with ``+Inf``."""
        out, running = [], 0
        for bound, n in zip((*(f"{b:g}" for b in BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class LoopWatch:
    """The loop's lag (``lag``) and the collector's pauses by generation (``gc_pauses``), from
    ``start`` until ``close``."""

    def __init__(self, interval_s: float = 0.025) -> None:
        self.interval_s = interval_s
        self.lag = Histogram()
        self.gc_pauses: dict[int, Histogram] = {gen: Histogram() for gen in range(3)}
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._gc_started = 0.0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval_s
        self._timer = loop.call_at(self._due, self._tick)
        gc.callbacks.append(self._on_gc)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.lag.observe(max(0.0, now - self._due))
        # Due an interval from now, not from the last due time: one long stall counts once.
        self._due = now + self.interval_s
        self._timer = loop.call_at(self._due, self._tick)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].observe(time.perf_counter() - self._gc_started)
