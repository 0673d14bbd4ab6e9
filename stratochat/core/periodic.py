"""Background work that runs every few seconds for the node's whole life."""

from __future__ import annotations

import asyncio
import contextlib
import logging


class Periodic:
    """Runs ``step`` every ``interval_s`` seconds from ``start`` until ``close``. A step that fails is
    logged (``failure``, at warning level, by the subclass's module logger) and the next one runs."""

    name = "periodic"
    failure = "periodic task failed"

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger(type(self).__module__)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def step(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.step()
            except Exception:
                self._log.warning(self.failure, exc_info=True)
