"""When queued socket writes go out: at the end of the unit of work that queued them.

A socket's frames are coalesced into one write. Left to ``call_soon``, that write waits for the
rest of the loop turn: every other socket's reads and the next batch of statements, about a
millisecond at 5,000 msg/s. So code that queues frames for many sockets at once (a store batch's
acks and fan-out) runs inside ``batch()``, and every flush deferred in it runs when it ends.
Outside a batch a flush runs at the end of the loop turn, as before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _State(threading.local):
    def __init__(self) -> None:
        self.depth = 0
        self.scheduled = False
        self.pending: list[Callable[[], None]] = []


_state = _State()
log = logging.getLogger("stratochat.outbox")


def defer(flush: Callable[[], None]) -> None:
    """Run ``flush`` once the current batch ends (outside one: at the end of this loop turn)."""
    st = _state
    st.pending.append(flush)
    if st.depth == 0 and not st.scheduled:
        st.scheduled = True
        asyncio.get_running_loop().call_soon(_run_scheduled)


@contextmanager
def batch() -> Iterator[None]:
    """Flushes deferred while inside run when the outermost batch ends."""
    st = _state
    st.depth += 1
    try:
        yield
    finally:
        st.depth -= 1
        if st.depth == 0:
            run_pending()


def run_pending() -> None:
    st = _state
    while st.pending:  # a flush may defer another (a close after the last frames)
        pending, st.pending = st.pending, []
        for flush in pending:
            try:
                flush()
            except Exception:
                log.exception("a socket flush failed")


def _run_scheduled() -> None:
    _state.scheduled = False
    run_pending()
