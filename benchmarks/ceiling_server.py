"""Stratochat with its message storage taken out: the most that a cheaper store could ever buy.

Runs ``stratochat serve`` (same arguments, same settings) with one change, to the SQLite store's writer
connection: every ``INSERT INTO messages`` is skipped and reported as one row written, and commits run
with ``synchronous=OFF``. Everything else is the shipped server: the authenticated socket, membership,
the frames, seqs, the chat row's preview, read markers and daily counts, each batch's transaction. No
message is stored, so history, recovery and retries do not work: this is a measuring instrument, never
a server to run.

    STRATOCHAT_DATA_DIR=/tmp/ceiling python benchmarks/ceiling_server.py --port 8768 &
    stratochat bench pairs --url http://127.0.0.1:8768 --server-pid $!

If a figure misses its target against this server too, no change to the store can meet it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stratochat.adapters.store import sqlite as sqlite_store
from stratochat.cli import main

SKIPPED = "INSERT INTO messages "


class _OneRow:
    rowcount = 1


class NoMessageStorage:
    """The writer connection, minus the messages table's inserts (they cost nothing and store nothing)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.skipped = 0

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql.startswith(SKIPPED):
            self.skipped += 1
            return _OneRow
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


_connect_writer = sqlite_store.SqliteStore._connect_writer


def connect_writer(self: sqlite_store.SqliteStore) -> Any:
    conn = _connect_writer(self)
    conn.execute("PRAGMA synchronous = OFF")
    return NoMessageStorage(conn)


if __name__ == "__main__":
    sqlite_store.SqliteStore._connect_writer = connect_writer  # type: ignore[method-assign]
    sys.exit(main(["serve", *sys.argv[1:]]))
