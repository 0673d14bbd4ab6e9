"""The embedded store: one SQLite file in WAL mode.

How it differs from the ports: writes are group-committed. Whatever writes one event-loop turn
queues form a batch: its statements run on the loop, each op in its own savepoint (messages on a
fast path) inside one ``BEGIN IMMEDIATE`` transaction, and only the ``COMMIT`` (the fsync,
``synchronous=FULL``: an acknowledged write is on disk) goes to the writer thread. While it commits,
the next batch gathers. Reads run on the loop, on a read connection of its own (WAL lets it read
while the writer writes), within a budget of SQLite steps: a read that would take longer (an inbox
of thousands of chats), or that meets a lock, runs again on a small pool of reader threads. The loop
never waits for an fsync: its statements work on
the writer connection's page cache (``WRITER_CACHE_KIB``), and the commit is the thread's. Seqs,
idempotency and counters are decided inside the write transaction, under SQLite's file lock, so
several server processes may share one database file: when another process holds the write lock,
the whole batch goes to the writer thread, which waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ...core import outbox
from ...core.errors import BadRequest, Conflict, NotFound, QuotaExceeded, StratochatError, Unavailable
from ...core.models import (
    Chat,
    FileRecord,
    FileRef,
    InboxEntry,
    Message,
    MessageDraft,
    Session,
    Usage,
    User,
    utc_day,
)
from ...core.ports import Clock, StoredCallback

log = logging.getLogger("stratochat.store.sqlite")

T = TypeVar("T")
WriteFn = Callable[..., Any]
WriteOp = tuple[WriteFn, tuple[Any, ...], "asyncio.Future[Any]"]
WriteResult = tuple["asyncio.Future[Any]", Any, BaseException | None]
WriterJob = Callable[..., list[WriteResult]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_premium INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    external_id TEXT UNIQUE,
    storage_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    data TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
CREATE TABLE IF NOT EXISTS chats (
    chat_id TEXT PRIMARY KEY,
    is_group INTEGER NOT NULL,
    title TEXT,
    member_ids TEXT NOT NULL,
    direct_key TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_message_content TEXT,
    last_message_at INTEGER
);
CREATE TABLE IF NOT EXISTS chat_members (
    user_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, chat_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    chat_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    content TEXT NOT NULL,
    file TEXT,
    created_at INTEGER NOT NULL,
    client_msg_id TEXT,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg_id
    ON messages(chat_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS usage_daily (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    messages INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL,
    uploader_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    message_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_pending_expiry ON files(expires_at) WHERE status = 'pending';
"""

USER_COLS = "user_id, username, password_hash, is_premium, created_at, external_id"
CHAT_COLS = (
    "chat_id, is_group, title, member_ids, direct_key, created_at, created_by, last_seq, "
    "last_message_content, last_message_at"
)
MSG_COLS = "message_id, chat_id, seq, sender_id, sender, message_type, content, file, created_at, client_msg_id"
FILE_COLS = (
    "file_id, chat_id, uploader_id, filename, content_type, size, blob_key, created_at, expires_at, status, message_id"
)

# How many queued writes one transaction takes at most.
BATCH_MAX = 512
CHECKPOINT_INTERVAL_S = 0.5
# WAL size (pages) past which a checkpoint pass has the writer rewind the WAL (SQLite's own automatic
# checkpoint starts at 1,000 pages).
REWIND_FRAMES = 1000
# After a rewind, a WAL file bigger than this is truncated to it (what a burst took is given back).
WAL_SIZE_LIMIT = 64 * 1024 * 1024
# A read on the loop may run this many SQLite VM steps (the progress handler counts them in units of
# LOOP_READ_STEP) before it is interrupted and runs again on a reader thread. A session is under a
# hundred steps, a history page of 200 messages about 3,000 (0.5 ms with its decoding), an inbox of
# 1,000 chats 36,000 (6 ms): so pages and ordinary inboxes stay on the loop, and a huge inbox goes to
# a thread, where the GIL still lets the loop take turns while it is decoded.
LOOP_READ_STEP = 1000
LOOP_READ_STEPS = 20_000
# The writer connection's page cache (KiB): the hot index pages stay in memory, so the statements the
# loop runs read nothing from disk, and a big batch does not spill pages to the WAL before its commit.
WRITER_CACHE_KIB = 16384


def _user(row: tuple[Any, ...]) -> User:
    return User(row[0], row[1], bool(row[3]), row[4], row[2], row[5])


def _chat(row: tuple[Any, ...]) -> Chat:
    return Chat(
        chat_id=row[0],
        is_group=bool(row[1]),
        title=row[2],
        member_ids=tuple(orjson.loads(row[3])),
        direct_key=row[4],
        created_at=row[5],
        created_by=row[6],
        last_seq=row[7],
        last_message_content=row[8],
        last_message_at=row[9],
    )


def _message(row: tuple[Any, ...]) -> Message:
    file = FileRef(**orjson.loads(row[7])) if row[7] else None
    return Message(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[8], row[9], file)


def _file_json(file: FileRef | None) -> str | None:
    if file is None:
        return None
    return orjson.dumps(
        {"file_id": file.file_id, "filename": file.filename, "content_type": file.content_type, "size": file.size}
    ).decode()


# write transactions (run on the writer thread) -----------------------------------------------------
def create_user_txn(conn: sqlite3.Connection, user: User) -> None:
    try:
        conn.execute(
            f"INSERT INTO users ({USER_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (user.user_id, user.username, user.password_hash, int(user.is_premium), user.created_at, user.external_id),
        )
    except sqlite3.IntegrityError as exc:
        raise Conflict(f"username '{user.username}' is taken") from exc


def set_premium_txn(conn: sqlite3.Connection, user_id: str, is_premium: bool) -> None:
    if conn.execute("UPDATE users SET is_premium = ? WHERE user_id = ?", (int(is_premium), user_id)).rowcount == 0:
        raise NotFound("no such user")


def create_session_txn(conn: sqlite3.Connection, s: Session) -> None:
    conn.execute(
        "INSERT INTO sessions (session_id, user_id, created_at, expires_at, data) VALUES (?, ?, ?, ?, ?)",
        (s.session_id, s.user_id, s.created_at, s.expires_at, orjson.dumps(s.data).decode() if s.data else None),
    )


def extend_session_txn(conn: sqlite3.Connection, session_id: str, expires_at: int) -> None:
    conn.execute("UPDATE sessions SET expires_at = MAX(expires_at, ?) WHERE session_id = ?", (expires_at, session_id))


def delete_session_txn(conn: sqlite3.Connection, session_id: str) -> None:
    conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))


def create_chat_txn(conn: sqlite3.Connection, chat: Chat) -> tuple[Chat, bool]:
    if chat.direct_key is not None:
        row = conn.execute(f"SELECT {CHAT_COLS} FROM chats WHERE direct_key = ?", (chat.direct_key,)).fetchone()
        if row is not None:
            return _chat(row), False
    conn.execute(
        f"INSERT INTO chats ({CHAT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, NULL)",
        (
            chat.chat_id,
            int(chat.is_group),
            chat.title,
            orjson.dumps(list(chat.member_ids)).decode(),
            chat.direct_key,
            chat.created_at,
            chat.created_by,
        ),
    )
    conn.executemany(
        "INSERT INTO chat_members (user_id, chat_id, read_seq) VALUES (?, ?, 0)",
        [(m, chat.chat_id) for m in chat.member_ids],
    )
    return chat, True


def set_read_seq_txn(conn: sqlite3.Connection, chat_id: str, user_id: str, seq: int) -> int:
    row = conn.execute(
        "UPDATE chat_members SET read_seq = MAX(read_seq, MIN(?, (SELECT last_seq FROM chats WHERE chat_id = ?)))"
        " WHERE user_id = ? AND chat_id = ? RETURNING read_seq",
        (seq, chat_id, user_id, chat_id),
    ).fetchone()
    if row is None:
        raise NotFound("no such chat")
    return int(row[0])


def _file_record(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(*row)


# (ms of the day's 00:00 UTC, "YYYY-MM-DD") of the writer's last message: utc_day's strftime cost 3%
# of the pairs bench's profile, once per message, for a value that changes once a day.
_day_cache: tuple[int, str] = (-1, "")


def _utc_day_cached(ms: int) -> str:
    global _day_cache
    start = ms - ms % 86_400_000
    cached, day = _day_cache
    if cached != start:
        day = utc_day(ms)
        _day_cache = (start, day)
    return day


def append_message_txn(
    conn: sqlite3.Connection, draft: MessageDraft, daily_limit: int | None, storage_limit: int | None = None
) -> tuple[Message, bool]:
    if draft.client_msg_id is not None:
        row = conn.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?",
            (draft.chat_id, draft.sender_id, draft.client_msg_id),
        ).fetchone()
        if row is not None:
            return _message(row), False
    day = _utc_day_cached(draft.created_at)
    if daily_limit is not None:
        row = conn.execute(
            "SELECT messages FROM usage_daily WHERE user_id = ? AND day = ?", (draft.sender_id, day)
        ).fetchone()
        # No row yet counts as 0 (a limit of 0 refuses the day's first message too).
        if (row[0] if row is not None else 0) >= daily_limit:
            raise QuotaExceeded(f"daily limit of {daily_limit} messages reached; it resets at 00:00 UTC")
    if draft.file is not None:
        take_file_txn(conn, draft, storage_limit)
    row = conn.execute(
        "UPDATE chats SET last_seq = last_seq + 1, last_message_content = ?, last_message_at = ?"
        " WHERE chat_id = ? RETURNING last_seq",
        (draft.preview, draft.created_at, draft.chat_id),
    ).fetchone()
    if row is None:
        raise NotFound("no such chat")
    seq = int(row[0])
    conn.execute(
        f"INSERT INTO messages ({MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            draft.message_id,
            draft.chat_id,
            seq,
            draft.sender_id,
            draft.sender,
            draft.message_type,
            draft.content,
            _file_json(draft.file),
            draft.created_at,
            draft.client_msg_id,
        ),
    )
    conn.execute(
        "UPDATE chat_members SET read_seq = ? WHERE user_id = ? AND chat_id = ?",
        (seq, draft.sender_id, draft.chat_id),
    )
    conn.execute(
        "INSERT INTO usage_daily (user_id, day, messages) VALUES (?, ?, 1)"
        " ON CONFLICT (user_id, day) DO UPDATE SET messages = messages + 1",
        (draft.sender_id, day),
    )
    return Message.from_draft(draft, seq), True


class MessageAppender:
    """The writer thread's fast path for ``append_message``: one INSERT per message.

    ``append_message_txn`` costs seven statements per message, and every statement the writer thread
    runs gives up the GIL and waits to get it back from a busy event loop: in the ``pairs`` bench the
    writer, not the loop, set the pace. Here each chat's ``last_seq`` is known from memory (read once,
    then kept while no other connection commits: ``PRAGMA data_version``), and the chat row, the
    sender's read marker and the day's count are written once per chat, sender and day at the end of
    the batch (``flush``), inside the same transaction. A message's checks all run before its first
    write, so a refused message writes nothing; on any SQLite error the writer rolls the whole
    transaction back and runs the batch again the slow way, op by op in savepoints.
    """

    def __init__(self) -> None:
        self.data_version: int | None = None
        self._seqs: dict[str, int] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._chats: dict[str, tuple[int, str, int]] = {}
        self._reads: dict[tuple[str, str], int] = {}
        self._usage: dict[tuple[str, str], int] = {}

    def begin(self, conn: sqlite3.Connection) -> None:
        """At the start of each write transaction: forget what another connection may have changed."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self.data_version:
            self.forget()
            self.data_version = version
        self._counts.clear()

    def forget(self) -> None:
        self._seqs.clear()
        self._counts.clear()
        self._chats.clear()
        self._reads.clear()
        self._usage.clear()

    def append(
        self,
        conn: sqlite3.Connection,
        draft: MessageDraft,
        daily_limit: int | None,
        storage_limit: int | None = None,
    ) -> tuple[Message, bool]:
        chat_id, sender_id, cmid = draft.chat_id, draft.sender_id, draft.client_msg_id
        if cmid is not None and draft.file is not None:
            # A file retry must be answered before take_file_txn, which it would fail.
            stored = self._stored(conn, draft)
            if stored is not None:
                return stored, False
        last = self._seqs.get(chat_id)
        if last is None:
            row = conn.execute("SELECT last_seq FROM chats WHERE chat_id = ?", (chat_id,)).fetchone()
            if row is None:
                raise NotFound("no such chat")
            last = int(row[0])
        day = _utc_day_cached(draft.created_at)
        key = (sender_id, day)
        if daily_limit is not None:
            count = self._counts.get(key)
            if count is None:
                row = conn.execute(
                    "SELECT messages FROM usage_daily WHERE user_id = ? AND day = ?", (sender_id, day)
                ).fetchone()
                count = self._counts[key] = (row[0] if row is not None else 0) + self._usage.get(key, 0)
            # No row yet counts as 0 (a limit of 0 refuses the day's first message too).
            if count >= daily_limit:
                stored = self._stored(conn, draft) if cmid is not None else None
                if stored is not None:  # a retry is never refused for the limit
                    return stored, False
                raise QuotaExceeded(f"daily limit of {daily_limit} messages reached; it resets at 00:00 UTC")
        if draft.file is not None:
            take_file_txn(conn, draft, storage_limit)
        seq = last + 1
        inserted = conn.execute(
            f"INSERT INTO messages ({MSG_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                draft.message_id,
                chat_id,
                seq,
                sender_id,
                draft.sender,
                draft.message_type,
                draft.content,
                _file_json(draft.file),
                draft.created_at,
                cmid,
            ),
        ).rowcount
        if not inserted:
            stored = self._stored(conn, draft) if cmid is not None else None
            if stored is None:  # the seq was taken: what we knew is stale; the caller starts over
                raise sqlite3.IntegrityError(f"seq {seq} of chat {chat_id} is taken")
            self._seqs[chat_id] = last
            return stored, False
        self._seqs[chat_id] = seq
        self._chats[chat_id] = (seq, draft.preview, draft.created_at)
        self._reads[(chat_id, sender_id)] = seq
        self._usage[key] = self._usage.get(key, 0) + 1
        if daily_limit is not None:
            self._counts[key] += 1
        return Message.from_draft(draft, seq), True

    @staticmethod
    def _stored(conn: sqlite3.Connection, draft: MessageDraft) -> Message | None:
        row = conn.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?",
            (draft.chat_id, draft.sender_id, draft.client_msg_id),
        ).fetchone()
        return _message(row) if row is not None else None

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write what the batch's messages left pending (before any other op, and before COMMIT)."""
        if self._chats:
            conn.executemany(
                "UPDATE chats SET last_seq = ?, last_message_content = ?, last_message_at = ? WHERE chat_id = ?",
                [(seq, preview, at, chat_id) for chat_id, (seq, preview, at) in self._chats.items()],
            )
            self._chats.clear()
        if self._reads:
            conn.executemany(
                "UPDATE chat_members SET read_seq = MAX(read_seq, ?) WHERE chat_id = ? AND user_id = ?",
                [(seq, chat_id, user_id) for (chat_id, user_id), seq in self._reads.items()],
            )
            self._reads.clear()
        if self._usage:
            conn.executemany(
                "INSERT INTO usage_daily (user_id, day, messages) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, day) DO UPDATE SET messages = messages + excluded.messages",
                [(user_id, day, n) for (user_id, day), n in self._usage.items()],
            )
            self._usage.clear()


def take_file_txn(conn: sqlite3.Connection, draft: MessageDraft, storage_limit: int | None) -> None:
    """The file record flips to sent and the sender is charged its size, or nothing happens."""
    assert draft.file is not None
    f = draft.file
    row = conn.execute(f"SELECT {FILE_COLS} FROM files WHERE file_id = ?", (f.file_id,)).fetchone()
    rec = _file_record(row) if row else None
    if rec is None or rec.uploader_id != draft.sender_id:
        raise BadRequest("no such file; request an upload first")
    if rec.chat_id != draft.chat_id:
        raise BadRequest("this file was granted for another chat")
    if rec.status != "pending":
        raise BadRequest("this file was already sent")
    if rec.expires_at <= draft.created_at:
        raise BadRequest("this upload expired; upload the file again")
    if (rec.filename, rec.content_type, rec.size) != (f.filename, f.content_type, f.size):
        raise BadRequest("the file does not match its upload grant")
    charged = conn.execute(
        "UPDATE users SET storage_bytes = storage_bytes + ?"
        " WHERE user_id = ? AND (? IS NULL OR storage_bytes + ? <= ?) RETURNING storage_bytes",
        (f.size, draft.sender_id, storage_limit, f.size, storage_limit),
    ).fetchone()
    if charged is None:
        raise QuotaExceeded(f"storage quota of {storage_limit} bytes reached; this file needs {f.size}")
    conn.execute(
        "UPDATE files SET status = 'sent', message_id = ? WHERE file_id = ? AND status = 'pending'",
        (draft.message_id, f.file_id),
    )


def create_file_txn(conn: sqlite3.Connection, rec: FileRecord) -> None:
    try:
        conn.execute(
            f"INSERT INTO files ({FILE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.file_id,
                rec.chat_id,
                rec.uploader_id,
                rec.filename,
                rec.content_type,
                rec.size,
                rec.key,
                rec.created_at,
                rec.expires_at,
                rec.status,
                rec.message_id,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise Conflict("file id is taken") from exc


def delete_pending_files_txn(conn: sqlite3.Connection, file_ids: list[str]) -> None:
    conn.executemany("DELETE FROM files WHERE file_id = ? AND status = 'pending'", [(i,) for i in file_ids])


def purge_txn(conn: sqlite3.Connection, now_ms: int) -> None:
    conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now_ms,))
    conn.execute("DELETE FROM usage_daily WHERE day < ?", (utc_day(now_ms - 2 * 86_400_000),))


# reads (on the loop's connection, or else a reader thread's: see SqliteStore._on_loop) ------------------------------
def _fetch_row(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
    return row


def list_chats_read(conn: sqlite3.Connection, user_id: str) -> list[InboxEntry]:
    rows = conn.execute(
        f"SELECT {', '.join('c.' + c for c in CHAT_COLS.split(', '))}, m.read_seq"
        " FROM chat_members m JOIN chats c ON c.chat_id = m.chat_id WHERE m.user_id = ?"
        " ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.chat_id",
        (user_id,),
    ).fetchall()
    return [InboxEntry(_chat(r[:-1]), int(r[-1])) for r in rows]


def list_messages_read(
    conn: sqlite3.Connection, chat_id: str, before: int | None, after: int | None, limit: int
) -> tuple[list[Message], bool]:
    if after is not None:
        rows = conn.execute(
            f"SELECT {MSG_COLS} FROM messages WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (chat_id, after, limit + 1),
        ).fetchall()
        return [_message(r) for r in rows[:limit]], len(rows) > limit
    bound = before if before is not None else 1 << 62
    rows = conn.execute(
        f"SELECT {MSG_COLS} FROM messages WHERE chat_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        (chat_id, bound, limit + 1),
    ).fetchall()
    page = [_message(r) for r in rows[:limit]]
    page.reverse()
    return page, len(rows) > limit


class SqliteStore:
    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        readers: int = 4,
        purge_interval_s: float = 600,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
        rewind_frames: int = REWIND_FRAMES,
    ) -> None:
        self._path = Path(path)
        self._checkpoint_interval_s = checkpoint_interval_s
        self._rewind_frames = rewind_frames
        # Set by the checkpoint thread, done by the writer thread (``_rewind``).
        self._rewind_due = False
        self.rewinds = 0
        self._clock = clock
        self._n_readers = readers
        self._purge_interval_s = purge_interval_s
        # Writes queued on the loop, not yet in a transaction.
        self._pending: list[WriteOp] = []
        self._kick_scheduled = False
        # True while the writer thread has the connection: a batch's COMMIT, or a whole batch.
        self._busy = False
        self._jobs: queue.SimpleQueue[tuple[WriterJob, tuple[Any, ...], list[asyncio.Future[Any]]] | None] = (
            queue.SimpleQueue()
        )
        self._conn: sqlite3.Connection | None = None  # the writer connection: the loop's or the thread's
        self._drained: asyncio.Future[None] | None = None  # close() waits on it for the last batch
        # submit_message's ``then`` callbacks, run by _resolve as their futures complete.
        self._thens: dict[asyncio.Future[Any], Callable[[asyncio.Future[Any]], None]] = {}
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._loop_reader: sqlite3.Connection | None = None  # the reads of ``_on_loop``
        self._loop_steps_left = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._purger: asyncio.Task[None] | None = None
        self._state = "new"
        self.batches = 0
        self.writes = 0
        self._appender = MessageAppender()  # used with the writer connection only
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._turn: WriterTurn | None = None

    # lifecycle -------------------------------------------------------------------------------------
    def _connect(self, *, read_only: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = FULL")
        if read_only:
            conn.execute("PRAGMA query_only = 1")
        return conn

    async def start(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"SqliteStore cannot start from state {self._state}")
        self._loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._init_schema)
        self._turn = WriterTurn(self._path)
        self._conn = await asyncio.to_thread(self._connect_writer)
        self._writer = threading.Thread(target=self._writer_main, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._checkpointer = threading.Thread(target=self._checkpointer_main, name="sqlite-checkpoint", daemon=True)
        self._checkpointer.start()
        self._readers = ThreadPoolExecutor(self._n_readers, thread_name_prefix="sqlite-reader")
        self._loop_reader = await asyncio.to_thread(self._connect, read_only=True)
        self._loop_reader.execute("PRAGMA busy_timeout = 0")  # never sleeps on the loop: see _on_loop
        self._loop_reader.set_progress_handler(self._loop_read_step, LOOP_READ_STEP)
        self._state = "open"
        if self._purge_interval_s > 0:
            self._purger = asyncio.create_task(self._purge_loop(), name="sqlite-purge")

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA busy_timeout = 0")  # BEGIN never sleeps on the loop; _begin waits on the thread
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return conn

    def _init_schema(self) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closing"
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._busy or self._pending:  # what was queued before closing is written first
            assert self._loop is not None
            self._drained = self._loop.create_future()
            await self._drained
        self._jobs.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._conn is not None:
            self._conn.close()
        if self._turn is not None:
            self._turn.close()
        self._stop.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        for conn in self._read_conns:
            conn.close()
        if self._loop_reader is not None:
            self._loop_reader.close()
        self._state = "closed"

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self._purge_interval_s)
            try:
                await self._write(purge_txn, self._clock.now_ms())
            except Exception:
                log.warning("purge of expired rows failed", exc_info=True)

    # writes: statements on the loop, the commit on the writer thread ------------------------------
    def _submit(self, fn: WriteFn, *args: Any) -> asyncio.Future[Any]:
        if self._state != "open":
            raise Unavailable("store is not open")
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((fn, args, fut))
        if not self._busy and not self._kick_scheduled:
            # At the end of this loop turn, so that every write the turn queues shares one commit.
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)
        return fut

    async def _write(self, fn: WriteFn, *args: Any) -> Any:
        return await self._submit(fn, *args)

    def _kick(self) -> None:
        """On the loop: start the next batch, unless the writer thread has the connection."""
        self._kick_scheduled = False
        if self._busy or not self._pending:
            return
        batch = self._pending[:BATCH_MAX]
        del self._pending[:BATCH_MAX]
        self._busy = True
        job: WriterJob = self._run_batch
        args: tuple[Any, ...] = (batch,)
        if not any(fn in THREAD_ONLY for fn, _, _ in batch):
            job, args = self._begin_here(batch)
        self._jobs.put((job, args, [fut for _, _, fut in batch]))

    def _begin_here(self, batch: list[WriteOp]) -> tuple[WriterJob, tuple[Any, ...]]:
        """Runs a batch's statements on the loop and returns the writer thread's job: the COMMIT, or,
        when the write lock is another process's or a statement failed, the batch itself. Each
        statement gives up the GIL; on the writer thread, each then waited for a busy loop to hand it
        back (up to the 5 ms switch interval): a batch of six messages took 1-3 ms instead of 0.4."""
        conn, turn = self._conn, self._turn
        assert conn is not None and turn is not None
        if not turn.try_take():
            return self._run_batch, (batch,)  # another process's turn: the thread waits for it
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return self._run_batch, (batch,)  # the thread waits for the lock
        try:
            results = self._apply(conn, batch)
        except Exception as exc:
            log.warning("fast write path failed (%s); running the batch op by op", exc)
            self._roll_back(conn)
            return self._run_batch_safely, (batch,)
        return self._commit_job, (results,)

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """Abandon the open transaction, and what the appender remembered of it."""
        self._appender.forget()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")

    def _checkpointer_main(self) -> None:
        """Copies the WAL back into the database file off the commit path. With SQLite's automatic
        checkpoint, the commit that filled the WAL to 1,000 pages also did the checkpoint and its fsync
        of the database file (every fraction of a second at 1,000 msg/s): the latency tail.

        Copying is not enough to keep the WAL small: SQLite rewinds it to its start only in a write
        transaction that begins when every frame has been copied back, and under steady traffic a batch
        commits during every pass (at 1,000 msg/s the WAL grew by 26 MB a second, without end). So when
        the WAL has grown past ``REWIND_FRAMES``, the pass asks the writer thread to copy the last frames
        itself, between two batches (``_rewind``): the next batch then writes from the start of the
        file again, over pages the disk has already allocated (an fdatasync of half the cost)."""
        conn = self._connect()
        done = -1
        try:
            while not self._stop.wait(self._checkpoint_interval_s):
                if self.batches == done:
                    continue
                done = self.batches
                try:
                    # PASSIVE never waits for readers or writers: it copies what it can now.
                    _, log_frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log_frames >= self._rewind_frames:
                        self._rewind_due = True
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _writer_main(self) -> None:
        assert self._loop is not None and self._conn is not None
        loop, conn = self._loop, self._conn
        while True:
            item = self._jobs.get()
            if item is None:
                break
            job, args, futs = item
            try:
                results = job(conn, *args)
            except Exception:  # a bug, not SQLite: still answer every write, and leave no transaction open
                log.exception("a write batch failed")
                self._roll_back(conn)
                results = [(fut, None, Unavailable("database write failed")) for fut in futs]
            finally:
                assert self._turn is not None
                self._turn.drop()  # the transaction is over (committed or rolled back): the next process's turn
            self.batches += 1
            self.writes += len(results)
            if self._rewind_due:
                # The batch's acks go out now; the next batch waits for the connection.
                loop.call_soon_threadsafe(self._resolve, results, False)
                try:
                    self._rewind(conn)
                finally:  # whatever the copy did, the loop gets the connection back
                    loop.call_soon_threadsafe(self._release)
            else:
                loop.call_soon_threadsafe(self._resolve, results)

    @property
    def wal_bytes(self) -> int:
        """The WAL file's size (``/metrics``): it should stay near what a few checkpoint passes write."""
        try:
            return self._path.with_name(self._path.name + "-wal").stat().st_size
        except OSError:
            return 0

    def _rewind(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, between two transactions: copy back what the checkpoint thread's pass
        left, so that the next transaction starts with nothing left to copy and SQLite rewinds the WAL
        (unless a reader still reads an old snapshot; the next pass tries again)."""
        self._rewind_due = False
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.rewinds += 1
        except sqlite3.Error as exc:
            log.warning("checkpoint failed: %s", exc)
        except Exception:  # a bug: the writer thread must live on
            log.exception("checkpoint failed")

    def _resolve(self, results: list[WriteResult], release: bool = True) -> None:
        """On the loop: complete a batch's futures, running their ``then`` callbacks at once, then
        (unless the writer thread keeps the connection a little longer) start the batch that gathered
        meanwhile."""
        thens = self._thens
        with outbox.batch():  # the batch's acks and fan-out go out before the next batch's statements
            for fut, value, exc in results:
                if not fut.cancelled():
                    if exc is not None:
                        fut.set_exception(exc)
                    else:
                        fut.set_result(value)
                then = thens.pop(fut, None) if thens else None
                if then is not None:
                    try:
                        then(fut)
                    except Exception:
                        log.exception("a write's completion callback failed")
        if release:
            self._release()

    def _release(self) -> None:
        """On the loop: the writer thread has handed the connection back."""
        self._busy = False
        self._kick()
        if not self._busy and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _apply(self, conn: sqlite3.Connection, batch: list[WriteOp]) -> list[WriteResult]:
        """A batch's statements, in an open transaction: messages through the appender, other ops each in
        a savepoint. Raises on any SQLite error; the caller rolls back."""
        appender = self._appender
        results: list[WriteResult] = []
        appender.begin(conn)
        for fn, args, fut in batch:
            if fn is append_message_txn:
                try:
                    results.append((fut, appender.append(conn, *args), None))
                except StratochatError as exc:
                    results.append((fut, None, exc))
            else:
                appender.flush(conn)
                results.append(_run_op(conn, fn, args, fut))
        appender.flush(conn)
        return results

    def _commit_job(self, conn: sqlite3.Connection, results: list[WriteResult]) -> list[WriteResult]:
        return _commit(conn, results, self._appender)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[WriteOp]) -> list[WriteResult]:
        """On the writer thread, the whole batch: when another process has the write lock (``_begin``
        waits for it), or for ops too big for the loop. Any SQLite error on the fast path rolls
        everything back and runs the batch again op by op (``_run_batch_safely``), so an error costs
        one op, never the batch's other writes."""
        try:
            self._take_turn()
            _begin(conn)
        except sqlite3.Error as exc:
            log.error("cannot begin a write transaction: %s", exc)
            return [(fut, None, Unavailable("database is busy; try again")) for _, _, fut in batch]
        try:
            results = self._apply(conn, batch)
        except sqlite3.Error as exc:
            log.warning("fast write path failed (%s); running the batch op by op", exc)
            self._roll_back(conn)
            return self._run_batch_safely(conn, batch)
        return _commit(conn, results, self._appender)

    def _take_turn(self) -> None:
        assert self._turn is not None
        self._turn.take()

    def _run_batch_safely(self, conn: sqlite3.Connection, batch: list[WriteOp]) -> list[WriteResult]:
        try:
            self._take_turn()
            _begin(conn)
        except sqlite3.Error as exc:
            log.error("cannot begin a write transaction: %s", exc)
            return [(fut, None, Unavailable("database is busy; try again")) for _, _, fut in batch]
        return _commit(conn, [_run_op(conn, fn, args, fut) for fn, args, fut in batch], self._appender)

    # the reader threads ----------------------------------------------------------------------------
    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(read_only=True)
            self._read_conns.append(conn)
        return conn

    def _run_read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(self._reader_conn(), *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._state != "open":
            raise Unavailable("store is not open")
        assert self._loop is not None
        try:
            return await self._loop.run_in_executor(self._readers, self._run_read, fn, args)
        except sqlite3.Error as exc:
            log.error("read failed: %s", exc)
            raise Unavailable("database read failed") from exc

    def _loop_read_step(self) -> bool:
        """SQLite's progress handler on the loop's connection: true (interrupt) once the budget is spent."""
        self._loop_steps_left -= LOOP_READ_STEP
        return self._loop_steps_left < 0

    async def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """A request's read, on the loop's own connection, in pages that are in memory. A reader thread's
        round trip (a thread woken on the other core, the GIL taken and given back twice, the future
        handed back through the loop) cost more than most reads: a quarter of an inbox request's CPU,
        and in a reconnect storm every request waited behind the others' reads. Two things send the read
        to a reader thread instead: more than ``LOOP_READ_STEPS`` SQLite steps (the progress handler
        interrupts it), and SQLITE_BUSY (the connection never waits for a lock, ``busy_timeout`` 0; in WAL
        mode a reader meets it only while another connection recovers or resets the WAL). The read
        functions only read, so running one again from the start is safe."""
        conn = self._loop_reader
        if self._state != "open" or conn is None:
            raise Unavailable("store is not open")
        self._loop_steps_left = LOOP_READ_STEPS
        try:
            return fn(conn, *args)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _TO_A_THREAD:
                log.error("read failed: %s", exc)
                raise Unavailable("database read failed") from exc
        return await self._read(fn, *args)

    async def _fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row by a unique key (a session, a user, a chat)."""
        return await self._on_loop(_fetch_row, sql, params)

    # HealthCheck -----------------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._fetchone("SELECT 1", ())

    # UserStore -------------------------------------------------------------------------------------
    async def create_user(self, user: User) -> None:
        await self._write(create_user_txn, user)

    async def get_user(self, user_id: str) -> User | None:
        row = await self._fetchone(f"SELECT {USER_COLS} FROM users WHERE user_id = ?", (user_id,))
        return _user(row) if row else None

    async def get_user_by_username(self, username: str) -> User | None:
        row = await self._fetchone(f"SELECT {USER_COLS} FROM users WHERE username = ?", (username,))
        return _user(row) if row else None

    async def get_user_by_external_id(self, external_id: str) -> User | None:
        row = await self._fetchone(f"SELECT {USER_COLS} FROM users WHERE external_id = ?", (external_id,))
        return _user(row) if row else None

    async def get_users(self, user_ids: Collection[str]) -> dict[str, User]:
        ids = list(dict.fromkeys(user_ids))

        def read(conn: sqlite3.Connection) -> dict[str, User]:
            out: dict[str, User] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {USER_COLS} FROM users WHERE user_id IN ({marks})", chunk):
                    out[row[0]] = _user(row)
            return out

        return await self._on_loop(read) if ids else {}

    async def set_premium(self, user_id: str, is_premium: bool) -> None:
        await self._write(set_premium_txn, user_id, is_premium)

    async def list_users(self, limit: int = 100, after: str | None = None) -> list[User]:
        rows = await self._on_loop(
            lambda c: c.execute(
                f"SELECT {USER_COLS} FROM users WHERE username > ? ORDER BY username LIMIT ?", (after or "", limit)
            ).fetchall()
        )
        return [_user(r) for r in rows]

    # SessionStore ----------------------------------------------------------------------------------
    async def create_session(self, session: Session) -> None:
        await self._write(create_session_txn, session)

    async def get_session(self, session_id: str) -> Session | None:
        row = await self._fetchone(
            "SELECT session_id, user_id, created_at, expires_at, data FROM sessions WHERE session_id = ?",
            (session_id,),
        )
        if row is None:
            return None
        return Session(row[0], row[1], row[2], row[3], orjson.loads(row[4]) if row[4] else None)

    async def extend_session(self, session_id: str, expires_at: int) -> None:
        await self._write(extend_session_txn, session_id, expires_at)

    async def delete_session(self, session_id: str) -> None:
        await self._write(delete_session_txn, session_id)

    # ChatStore -------------------------------------------------------------------------------------
    async def create_chat(self, chat: Chat) -> tuple[Chat, bool]:
        result: tuple[Chat, bool] = await self._write(create_chat_txn, chat)
        return result

    async def get_chat(self, chat_id: str) -> Chat | None:
        row = await self._fetchone(f"SELECT {CHAT_COLS} FROM chats WHERE chat_id = ?", (chat_id,))
        return _chat(row) if row else None

    async def list_chats_for_user(self, user_id: str) -> list[InboxEntry]:
        return await self._on_loop(list_chats_read, user_id)

    async def set_read_seq(self, chat_id: str, user_id: str, seq: int) -> int:
        marker: int = await self._write(set_read_seq_txn, chat_id, user_id, seq)
        return marker

    async def contacts_of(self, user_id: str) -> set[str]:
        rows = await self._on_loop(
            lambda c: c.execute(
                "SELECT DISTINCT o.user_id FROM chat_members m JOIN chat_members o ON o.chat_id = m.chat_id"
                " WHERE m.user_id = ? AND o.user_id != ?",
                (user_id, user_id),
            ).fetchall()
        )
        return {r[0] for r in rows}

    # MessageStore ----------------------------------------------------------------------------------
    async def append_message(
        self, draft: MessageDraft, *, daily_limit: int | None = None, storage_limit: int | None = None
    ) -> tuple[Message, bool]:
        return await self.submit_message(draft, daily_limit=daily_limit, storage_limit=storage_limit)

    def submit_message(
        self,
        draft: MessageDraft,
        *,
        daily_limit: int | None = None,
        storage_limit: int | None = None,
        then: StoredCallback | None = None,
    ) -> asyncio.Future[tuple[Message, bool]]:
        fut = self._submit(append_message_txn, draft, daily_limit, storage_limit)
        if then is not None:
            self._thens[fut] = then
        return fut

    async def get_by_client_msg_id(self, chat_id: str, sender_id: str, client_msg_id: str) -> Message | None:
        row = await self._fetchone(
            f"SELECT {MSG_COLS} FROM messages WHERE chat_id = ? AND sender_id = ? AND client_msg_id = ?",
            (chat_id, sender_id, client_msg_id),
        )
        return _message(row) if row else None

    async def list_messages(
        self, chat_id: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> tuple[list[Message], bool]:
        if before is not None and after is not None:
            raise ValueError("before and after are exclusive")
        return await self._on_loop(list_messages_read, chat_id, before, after, limit)

    # UsageStore ------------------------------------------------------------------------------------
    async def get_usage(self, user_id: str, day: str) -> Usage:
        def read(conn: sqlite3.Connection) -> Usage:
            m = conn.execute(
                "SELECT messages FROM usage_daily WHERE user_id = ? AND day = ?", (user_id, day)
            ).fetchone()
            s = conn.execute("SELECT storage_bytes FROM users WHERE user_id = ?", (user_id,)).fetchone()
            return Usage(int(m[0]) if m else 0, int(s[0]) if s else 0)

        return await self._on_loop(read)

    # FileStore -------------------------------------------------------------------------------------
    async def create_file(self, record: FileRecord) -> None:
        await self._write(create_file_txn, record)

    async def get_file(self, file_id: str) -> FileRecord | None:
        row = await self._fetchone(f"SELECT {FILE_COLS} FROM files WHERE file_id = ?", (file_id,))
        return _file_record(row) if row else None

    async def expired_files(self, before: int, limit: int = 500) -> list[FileRecord]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {FILE_COLS} FROM files WHERE status = 'pending' AND expires_at < ?"
                " ORDER BY expires_at LIMIT ?",
                (before, limit),
            ).fetchall()
        )
        return [_file_record(r) for r in rows]

    async def delete_pending_files(self, file_ids: Collection[str]) -> None:
        if file_ids:
            await self._write(delete_pending_files_txn, list(file_ids))


# The errors of a read on the loop that send it to a reader thread (see SqliteStore._on_loop).
_TO_A_THREAD = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT})

# Ops that may touch many rows: they run on the writer thread, never on the loop.
THREAD_ONLY: frozenset[WriteFn] = frozenset({purge_txn, delete_pending_files_txn})


class WriterTurn:
    """An advisory lock (``flock``) on ``<database>-writer`` that each process writing the database holds
    for the length of its write transaction. SQLite keeps no queue for its write lock: a process that finds
    it taken can only poll, and with two nodes on one file the poller kept losing to the holder's next
    transaction (waits of 7-8 ms at the 90th percentile and 22-24 ms at the 99th, at 1,000 msg/s). Blocked
    in ``flock``, a waiter wakes as soon as the holder lets go, before the holder's loop has started its next
    batch. The kernel drops a crashed process's lock. SQLite's own lock still guards the data: a writer that
    takes no turn (the ``sqlite3`` shell, say) is waited for by ``_begin`` as before. The wait has no timeout
    of its own: a holder keeps the turn for one transaction, whose ``_begin`` gives up after 30 s, so only a
    stopped (SIGSTOP) or hung peer holds it longer, and then every write waits for it."""

    def __init__(self, db_path: Path) -> None:
        self._fd = os.open(f"{db_path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.held = False

    def try_take(self) -> bool:
        """On the loop: the turn if it is free now, never waiting."""
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
        return True

    def take(self) -> None:
        """On the writer thread: wait for the turn (the GIL is released while blocked)."""
        if not self.held:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.held = True

    def drop(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.drop()
        os.close(self._fd)


def _begin(conn: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write lock in short sleeps. The writer's
    connection has no busy timeout: SQLite's own busy handler backs off to 100 ms sleeps, so with two
    processes taking turns the write lock sat free while the waiter slept (a collapse under load)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0002
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.002)


def _run_op(conn: sqlite3.Connection, fn: WriteFn, args: tuple[Any, ...], fut: asyncio.Future[Any]) -> WriteResult:
    """One op in a savepoint: it applies whole or not at all."""
    conn.execute("SAVEPOINT op")
    try:
        value = fn(conn, *args)
    except Exception as exc:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        if isinstance(exc, sqlite3.Error):
            log.error("write %s failed: %s", getattr(fn, "__name__", fn), exc)
            exc = Unavailable("database write failed")
        return fut, None, exc
    conn.execute("RELEASE op")
    return fut, value, None


def _commit(
    conn: sqlite3.Connection,
    results: list[WriteResult],
    appender: MessageAppender,
) -> list[WriteResult]:
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        log.error("commit failed: %s", exc)
        appender.forget()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        return [(fut, None, Unavailable("database commit failed")) for fut, _, _ in results]
    return results
