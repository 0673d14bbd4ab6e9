"""Unique ids for hot-path records, without a system call each.

``uuid4`` reads ``os.urandom``, which releases the GIL; on a busy node getting it back meant waiting
for the store's writer thread, once per message (a fifth of the event loop's wall time in the
``pairs`` bench). Ids here are a random 64-bit prefix per process followed by a counter: unique across
processes and restarts as long as prefixes differ, 32 hex characters like a uuid's ``hex``. They are
identifiers, not secrets.
"""

from __future__ import annotations

import itertools
import os
import secrets


class IdSequence:
    def __init__(self) -> None:
        self.reseed()
        # A forked child must not repeat its parent's ids.
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


message_ids = IdSequence()
