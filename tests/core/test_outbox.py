"""Deferred socket flushes: at the end of the batch that queued them, else at the end of the loop turn."""

from __future__ import annotations

import asyncio

from stratochat.core import outbox


async def test_a_flush_deferred_in_a_batch_runs_when_the_batch_ends() -> None:
    ran: list[str] = []
    with outbox.batch():
        outbox.defer(lambda: ran.append("a"))
        with outbox.batch():  # nested: only the outermost end flushes
            outbox.defer(lambda: ran.append("b"))
        assert ran == []
    assert ran == ["a", "b"]


async def test_outside_a_batch_a_flush_waits_for_the_end_of_the_loop_turn() -> None:
    ran: list[str] = []
    outbox.defer(lambda: ran.append("a"))
    assert ran == []
    await asyncio.sleep(0)
    assert ran == ["a"]


async def test_a_failing_flush_does_not_stop_the_others_nor_a_flush_they_defer() -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("socket gone")

    def then_close() -> None:
        ran.append("frames")
        outbox.defer(lambda: ran.append("close"))

    with outbox.batch():
        outbox.defer(boom)
        outbox.defer(then_close)
    assert ran == ["frames", "close"]
