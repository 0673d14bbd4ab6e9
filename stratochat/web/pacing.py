"""Work that can wait, let through a few at a time per event-loop turn.

When 5,000 clients drop at once, their sockets' cleanups (the hub's detach, presence, the close and
the end of each ASGI task) all become ready in the same few loop turns, about 150 us each: turns of
tens of milliseconds in which the frames of the sockets still open wait. ``TurnGate`` lets
``per_turn`` waiters through each turn, so those frames are served between them.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnGate:
    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    async def wait(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._release)
        await fut

    def _release(self) -> None:
        n = 0
        while self._waiters and n < self.per_turn:
            fut = self._waiters.popleft()
            if not fut.done():  # a cancelled waiter takes no place
                fut.set_result(None)
                n += 1
        if self._waiters:
            asyncio.get_running_loop().call_soon(self._release)  # behind this turn's other work
        else:
            self._scheduled = False
