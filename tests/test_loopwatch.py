"""The loop and collector watch behind ``/metrics``: a stalled loop and a collection are each recorded."""

from __future__ import annotations

import asyncio
import gc
import time

from stratochat.loopwatch import BUCKETS, Histogram, LoopWatch


def test_histogram_buckets_are_cumulative_and_end_at_inf() -> None:
    h = Histogram()
    for seconds in (0.0005, 0.001, 0.003, 0.2, 9.0):
        h.observe(seconds)
    cumulative = dict(h.cumulative())
    assert cumulative["0.001"] == 2  # a bucket holds what is at or below its bound
    assert cumulative["0.005"] == 3 and cumulative["0.1"] == 3 and cumulative["0.25"] == 4
    assert cumulative["2.5"] == 4 and cumulative["+Inf"] == 5 == h.count
    assert len(cumulative) == len(BUCKETS) + 1
    assert abs(h.sum - 9.2045) < 1e-9


async def test_a_stalled_loop_and_a_collection_are_recorded() -> None:
    watch = LoopWatch(interval_s=0.01)
    await watch.start()
    try:
        await asyncio.sleep(0.1)
        quiet = dict(watch.lag.cumulative())
        assert quiet["+Inf"] >= 3  # the timer ticks
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop, as a long turn does
        await asyncio.sleep(0.05)
        after = dict(watch.lag.cumulative())
        # The stall: 0.3 s less the time since the last tick, and the loop turn that notices it.
        assert after["+Inf"] - after["0.25"] >= quiet["+Inf"] - quiet["0.25"] + 1
        assert after["1"] == after["+Inf"]
        before = watch.gc_pauses[2].count
        gc.collect()
        assert watch.gc_pauses[2].count >= before + 1 and watch.gc_pauses[2].sum > 0
    finally:
        await watch.close()
    assert watch._on_gc not in gc.callbacks
    ticks = watch.lag.count
    await asyncio.sleep(0.05)
    assert watch.lag.count == ticks  # closed: the timer is gone too
