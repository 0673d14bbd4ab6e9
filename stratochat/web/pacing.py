"""Work that can wait, let through a few at a time per event-loop turn.

When 5,000 clients drop at once, their sockets' cleanups (the hub's detach, presence, the close and
the end of each ASGI task) all become ready in the same few loop turns, about 150 us each: turns of
tens of milliseconds in which the frames of the sockets still open wait. ``TurnGate`` lets
``per_turn`` waiters through each turn, so those frames are served between them. ``TurnPacer`` does
the same for plain callbacks (the WebSocket protocol's closing handshakes, which run before any task).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial


class TurnGate:
    """``await gate.wait()`` returns in a later loop turn, ``per_turn`` waiters per turn, in order."""

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._pacer: TurnPacer | None = None

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pacer is None:
            self._pacer = TurnPacer(loop, self.per_turn)
        fut = loop.create_future()
        self._pacer.defer(partial(_let_through, fut))
        await fut


def _let_through(fut: asyncio.Future[None]) -> bool:
    if fut.done():  # a cancelled waiter takes no place
        return False
    fut.set_result(None)
    return True


class TurnPacer:
    """Runs deferred callbacks in order, ``per_turn`` of them per loop turn (a callback that returns
    False took no place). ``most`` is the largest number run in one turn so far (``per_turn`` once a
    burst has been paced)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self.per_turn = per_turn
        self.most = 0
        self._loop = loop
        self._todo: deque[Callable[[], bool | None]] = deque()
        self._scheduled = False

    def defer(self, fn: Callable[[], bool | None]) -> None:
        self._todo.append(fn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        n = 0
        todo = self._todo
        while todo and n < self.per_turn:
            fn = todo.popleft()
            try:
                if fn() is not False:
                    n += 1
            except Exception as exc:
                n += 1  # one socket's failure must not stop the others' turns
                self._loop.call_exception_handler({"message": "a paced callback failed", "exception": exc})
        self.most = max(self.most, n)
        if todo:
            self._loop.call_soon(self._run)  # behind the I/O and the callbacks of this turn
        else:
            self._scheduled = False
