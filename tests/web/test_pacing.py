"""TurnGate: a few waiters through per loop turn, the others in later turns."""

from __future__ import annotations

import asyncio

from stratochat.web.pacing import TurnGate


async def test_waiters_pass_a_few_per_loop_turn_in_order() -> None:
    gate = TurnGate(2)
    passed: list[tuple[int, int]] = []
    turn = 0

    async def waiter(i: int) -> None:
        await gate.wait()
        passed.append((i, turn))

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    while len(passed) < 5 and turn < 50:
        await asyncio.sleep(0)
        turn += 1
    await asyncio.gather(*tasks)
    assert [i for i, _ in passed] == [0, 1, 2, 3, 4]
    turns = [t for _, t in passed]
    assert max(turns.count(t) for t in set(turns)) == 2  # never more than per_turn in one turn
    assert len(set(turns)) == 3


async def test_a_cancelled_waiter_takes_no_place() -> None:
    gate = TurnGate(1)
    a, b, c = (asyncio.create_task(gate.wait()) for _ in range(3))
    await asyncio.sleep(0)  # all three wait
    a.cancel()
    await asyncio.sleep(0)  # one release: a's place goes to b
    await asyncio.sleep(0)
    assert a.cancelled() and b.done() and not c.done()
    await asyncio.wait_for(c, 1)
