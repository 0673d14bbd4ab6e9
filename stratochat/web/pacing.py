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


class TurnPacer:
    """Runs deferred callbacks in order, ``per_turn`` of them per loop turn. ``most`` is the largest
    number run in one turn so far (``per_turn`` once a burst has been paced)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self.per_turn = per_turn
        self.most = 0
        self._loop = loop
        self._todo: deque[Callable[[], None]] = deque()
        self._scheduled = False

    def defer(self, fn: Callable[[], None]) -> None:
        self._todo.append(fn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        n = 0
        todo = self._todo
        while todo and n < self.per_turn:
            fn = todo.popleft()
            n += 1
            try:
                fn()
            except Exception as exc:  # one socket's failure must not stop the others' turns
                self._loop.call_exception_handler({"message": "a paced callback failed", "exception": exc})
        self.most = max(self.most, n)
        if todo:
            self._loop.call_soon(self._run)  # behind the I/O and the callbacks of this turn
        else:
            self._scheduled = False
