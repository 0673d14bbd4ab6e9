"""A short drain on SIGTERM, before uvicorn's own graceful shutdown.

uvicorn, on SIGTERM, stops accepting and at once writes a 1012 close on every socket, so acks of
sends still in flight never reach their clients (they retry; nothing is lost, but every such message
costs a round trip and a duplicate request). The drain goes first, the way aiohttp describes its
shutdown: the node reports itself unready (``/readyz`` fails, new ``/ws`` handshakes get 503 so the
balancer tries another node), lets ``grace_s`` pass so in-flight sends commit and their acks and queued
frames go out, closes every socket with 1012 (each writer flushes its queue first), waits briefly for
the handlers to finish, and only then hands the signal to uvicorn, which stops accepting, waits for
handler tasks and runs the lifespan shutdown (hub flush to the broker, store flush, close).

Only in the main thread (where signals are delivered): in-process test servers shut down as before.
A second SIGTERM skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from types import FrameType
from typing import Any

from ..core.hub import Hub

log = logging.getLogger("stratochat.shutdown")

CLOSE_RESTARTING = 1012
# After closing the sockets, how long to wait for their handlers before handing over to uvicorn.
CLOSE_WAIT_S = 3.0


class Drain:
    def __init__(self, hub: Hub, grace_s: float) -> None:
        self._hub = hub
        self._grace_s = grace_s
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._installed = False

    def install(self) -> None:
        """Take SIGTERM over from the server (uvicorn installed its handler before the lifespan)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        self._loop = asyncio.get_running_loop()
        self._previous = previous
        signal.signal(signal.SIGTERM, self._on_signal)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    async def close(self) -> None:
        self.uninstall()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._task is not None or self._loop is None:
            self._previous(sig, frame)  # a second SIGTERM: hurry
            return
        self._loop.call_soon_threadsafe(self._begin, sig, frame)

    def _begin(self, sig: int, frame: FrameType | None) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run(sig, frame))

    async def _run(self, sig: int, frame: FrameType | None) -> None:
        hub = self._hub
        hub.draining = True
        log.info("draining: %d sockets, closing them in %.1f s", hub.connection_count(), self._grace_s)
        try:
            await asyncio.sleep(self._grace_s)
            hub.close_all(CLOSE_RESTARTING, "server restarting; reconnect")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLOSE_WAIT_S
            while hub.connection_count() and loop.time() < deadline:  # noqa: ASYNC110 (no event for "last socket gone"; bounded)
                await asyncio.sleep(0.05)
        finally:
            self.uninstall()
            self._previous(sig, frame)
