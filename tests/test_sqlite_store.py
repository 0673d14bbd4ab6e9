"""What only the SQLite store does: its seq cache across processes and the WAL checkpoint thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratochat.adapters.store import sqlite as sqlite_module
from stratochat.adapters.store.sqlite import SqliteStore
from stratochat.core.clock import FakeClock
from stratochat.core.errors import Unavailable
from stratochat.core.models import Chat, Session
from tests.contracts.store import draft, new_chat, new_user, uid


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore, FakeClock]]:
    """Two stores on one file, as two processes would have."""
    clock = FakeClock()
    a, b = SqliteStore(tmp_path / "s.db", clock), SqliteStore(tmp_path / "s.db", clock)
    await a.start()
    await b.start()
    try:
        yield a, b, clock
    finally:
        await a.close()
        await b.close()


async def test_seqs_stay_gapless_when_two_writers_take_turns(two: tuple[SqliteStore, SqliteStore, FakeClock]) -> None:
    """Each writer keeps its chats' last seq in memory; another's commit in between is noticed (data_version),
    so seqs neither repeat nor skip, and the chat row and read markers end where the last message put them."""
    a, b, clock = two
    alice, bob = await new_user(a, clock), await new_user(a, clock)
    chat = await new_chat(a, clock, alice, bob)
    seqs = []
    for i in range(6):
        store, sender = (a, alice) if i % 2 == 0 else (b, bob)
        message, created = await store.append_message(draft(chat, sender, f"m{i}"))
        assert created
        seqs.append(message.seq)
    both = await asyncio.gather(*(s.append_message(draft(chat, alice, "x")) for s in (a, b, a, b)))
    seqs += [m.seq for m, _ in both]
    assert sorted(seqs) == list(range(1, 11))
    page, _ = await b.list_messages(chat.chat_id, after=0, limit=50)
    assert [m.seq for m in page] == list(range(1, 11))
    inbox = {e.chat.chat_id: e for e in await a.list_chats_for_user(bob.user_id)}
    assert inbox[chat.chat_id].chat.last_seq == 10


async def test_the_wal_is_checkpointed_off_the_commit_path(tmp_path: Path) -> None:
    """The writer never checkpoints; the checkpoint thread does, so the WAL is reused instead of growing
    with every message (a commit-time checkpoint would also fsync the database file inside a send)."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "w.db", clock)
    await store.start()
    try:
        alice, bob = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, alice, bob)
        wal = tmp_path / "w.db-wal"
        sizes = []
        for _ in range(8):
            await asyncio.gather(*(store.append_message(draft(chat, alice, "y" * 500)) for _ in range(400)))
            await asyncio.sleep(0.7)  # a checkpoint interval
            sizes.append(wal.stat().st_size)
        page, _ = await store.list_messages(chat.chat_id, before=None, limit=1)
        assert page[0].seq == 3200
        # Without the checkpoints the WAL grows by every batch (0.35 MB to 2.7 MB here); with them it is
        # rewound and stays where the first batches took it.
        assert sizes[-1] <= 2 * sizes[0], sizes
        with sqlite3.connect(tmp_path / "w.db") as conn:
            busy, log_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and log_frames == checkpointed
    finally:
        await store.close()


async def _wal_under_steady_writes(tmp_path: Path, rewind_frames: int) -> tuple[list[int], int, int]:
    """Four senders that never pause, so a batch is always under way when a checkpoint pass ends:
    the WAL's size sampled every 50 ms for 1.5 s, the rewinds, and the messages stored."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "r.db", clock, checkpoint_interval_s=0.05, rewind_frames=rewind_frames)
    await store.start()
    try:
        alice, bob = await new_user(store, clock), await new_user(store, clock)
        chats = [await new_chat(store, clock, alice, bob, title=f"g{i}") for i in range(4)]
        stop = asyncio.Event()

        async def sender(chat: Chat) -> int:
            n = 0
            while not stop.is_set() and n < 20_000:  # bounded, whatever the machine's speed
                await store.append_message(draft(chat, alice, "z" * 100, f"c{n}"))
                n += 1
            return n

        tasks = [asyncio.create_task(sender(chat)) for chat in chats]
        sizes = []
        for _ in range(30):
            await asyncio.sleep(0.05)
            sizes.append((tmp_path / "r.db-wal").stat().st_size)
        stop.set()
        sent = sum(await asyncio.gather(*tasks))
        for chat, task in zip(chats, tasks, strict=True):
            page, _ = await store.list_messages(chat.chat_id, before=None, limit=1)
            assert page[0].seq == task.result()  # every message stored, seqs gapless
        return sizes, store.rewinds, sent
    finally:
        await store.close()


async def test_the_wal_is_rewound_under_steady_traffic(tmp_path: Path) -> None:
    """SQLite starts the WAL over only in a write transaction that begins with every frame copied back,
    and under steady traffic some batch always commits during a checkpoint pass: the WAL grew without
    end (26 MB a second at 1,000 msg/s). The writer thread copies the last frames between two batches,
    so the WAL is reused from its start and stays as big as a few passes' worth of writes."""
    sizes, rewinds, sent = await _wal_under_steady_writes(tmp_path, rewind_frames=100)
    assert rewinds >= 5 and sent > 500
    # Each message here is its own small commit of a few pages: a WAL that is never rewound keeps
    # 11-18 KB a message (130-170 MB after these 1.5 s), a rewound one a fraction of a page.
    assert sizes[-1] < 2048 * sent, (sizes, sent)


@pytest.fixture
async def one(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, FakeClock]]:
    clock = FakeClock()
    store = SqliteStore(tmp_path / "s.db", clock)
    await store.start()
    try:
        yield store, clock
    finally:
        await store.close()


async def test_a_batch_waits_on_the_writer_thread_while_another_process_holds_the_write_lock(
    one: tuple[SqliteStore, FakeClock], tmp_path: Path
) -> None:
    """The loop never waits for the lock: it hands the batch to the writer thread, which does."""
    store, clock = one
    alice, bob = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, alice, bob)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        pending = [store.submit_message(draft(chat, alice, f"m{i}")) for i in range(3)]
        ticks = 0
        for _ in range(20):  # the loop keeps turning meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not any(f.done() for f in pending)
    finally:
        other.execute("ROLLBACK")
        other.close()
    stored = await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert [m.seq for m, created in stored] == [1, 2, 3]


async def test_a_sqlite_error_on_the_fast_path_reruns_the_batch_op_by_op(
    one: tuple[SqliteStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the failed attempt stays, and every write of the batch still lands once."""
    from stratochat.adapters.store import sqlite as sqlite_store

    store, clock = one
    alice, bob = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, alice, bob)
    real_append = sqlite_store.MessageAppender.append
    calls = 0

    def failing_second(self: object, *args: object, **kw: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_append(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_store.MessageAppender, "append", failing_second)
    stored = await asyncio.gather(*(store.append_message(draft(chat, alice, f"m{i}", f"c{i}")) for i in range(3)))
    assert [(m.seq, m.content, created) for m, created in stored] == [(1, "m0", True), (2, "m1", True), (3, "m2", True)]
    page, _ = await store.list_messages(chat.chat_id, after=0, limit=50)
    assert [(m.seq, m.content) for m in page] == [(1, "m0"), (2, "m1"), (3, "m2")]
    monkeypatch.undo()
    message, created = await store.append_message(draft(chat, bob, "after"))
    assert created and message.seq == 4  # the fast path again, its seq cache rebuilt


class _BusyConnection:
    """Stands in for the loop's read connection: every statement fails as SQLite would."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.calls = 0

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        self.calls += 1
        exc = sqlite3.OperationalError("database is locked" if self.code == sqlite3.SQLITE_BUSY else "disk I/O error")
        exc.sqlite_errorcode = self.code  # type: ignore[attr-defined]
        raise exc


async def test_request_reads_do_not_wait_behind_the_reader_threads(one: tuple[SqliteStore, FakeClock]) -> None:
    """A request's reads (its session and user, an inbox, a history page) run on the loop: with every
    reader thread held by a long read (an inbox of thousands of chats), they still answer at once."""
    store, clock = one
    alice, bob = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, alice, bob)
    await asyncio.gather(*(store.append_message(draft(chat, alice, f"m{i}")) for i in range(5)))
    now = clock.now_ms()
    session = Session(uid(), alice.user_id, now, now + 60_000)
    await store.create_session(session)
    release = threading.Event()
    assert store._readers is not None
    held = [store._readers.submit(release.wait, 10) for _ in range(8)]
    try:
        got = await asyncio.wait_for(store.get_session(session.session_id), 2)
        assert got is not None and got.user_id == alice.user_id
        found = await asyncio.wait_for(store.get_user(alice.user_id), 2)
        assert found is not None and found.username == alice.username
        inbox = await asyncio.wait_for(store.list_chats_for_user(bob.user_id), 2)
        assert [(e.chat.chat_id, e.chat.last_seq) for e in inbox] == [(chat.chat_id, 5)]
        page, more = await asyncio.wait_for(store.list_messages(chat.chat_id, after=2, limit=2), 2)
        assert ([m.content for m in page], more) == (["m2", "m3"], True)
        users = await asyncio.wait_for(store.get_users([alice.user_id, bob.user_id]), 2)
        assert set(users) == {alice.user_id, bob.user_id}
        assert not any(f.done() for f in held)  # they were still holding every thread
    finally:
        release.set()


async def test_a_read_past_its_budget_on_the_loop_runs_on_a_reader_thread(
    one: tuple[SqliteStore, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that takes more SQLite steps than the loop allows is interrupted and runs again, whole, on
    a reader thread; one within the budget never leaves the loop."""
    store, clock = one
    alice, bob = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, alice, bob)
    await asyncio.gather(*(store.append_message(draft(chat, alice, f"m{i}")) for i in range(300)))
    on_threads: list[object] = []
    read = store._read

    async def counted(fn: object, *args: object) -> object:
        on_threads.append(fn)
        return await read(fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_read", counted)
    page, more = await store.list_messages(chat.chat_id, after=0, limit=200)
    assert ([m.seq for m in page], more) == (list(range(1, 201)), True)
    assert on_threads == []
    monkeypatch.setattr(sqlite_module, "LOOP_READ_STEPS", sqlite_module.LOOP_READ_STEP)  # one step
    page, more = await store.list_messages(chat.chat_id, after=0, limit=200)
    assert ([m.seq for m in page], more) == (list(range(1, 201)), True)
    assert len(on_threads) == 1
    assert await store.get_user(alice.user_id) is not None  # a lookup is well under one step
    assert len(on_threads) == 1


async def test_a_busy_read_on_the_loop_goes_to_a_reader_thread(one: tuple[SqliteStore, FakeClock]) -> None:
    """The loop's connection never waits for a lock: SQLITE_BUSY sends the read to a reader thread
    (which may wait), and the caller gets the rows all the same."""
    store, clock = one
    user = await new_user(store, clock)
    busy = _BusyConnection(sqlite3.SQLITE_BUSY)
    real, store._loop_reader = store._loop_reader, busy  # type: ignore[assignment]
    try:
        found = await store.get_user(user.user_id)
        inbox = await store.list_chats_for_user(user.user_id)
    finally:
        store._loop_reader = real
    assert busy.calls == 2
    assert found is not None and found.user_id == user.user_id
    assert inbox == []


async def test_a_failing_read_on_the_loop_is_unavailable(one: tuple[SqliteStore, FakeClock]) -> None:
    """Any other SQLite error is the store's clear ``Unavailable`` (503 to a client), not a crash."""
    store, clock = one
    user = await new_user(store, clock)
    real, store._loop_reader = store._loop_reader, _BusyConnection(10)  # type: ignore[assignment]
    try:
        with pytest.raises(Unavailable):
            await store.get_user(user.user_id)
    finally:
        store._loop_reader = real
    assert await store.get_user(user.user_id) is not None


async def test_a_write_waits_for_another_process_turn_and_goes_in_as_it_ends(tmp_path: Path) -> None:
    """The writer turn (an flock on ``<db>-writer``): while another process holds it, a write waits
    (no error, no SQLite busy loop), and it goes in once that turn ends. flock locks belong to an open file,
    so a second WriterTurn in this process stands in for another process."""
    clock = FakeClock()
    store = SqliteStore(tmp_path / "t.db", clock)
    await store.start()
    other = sqlite_module.WriterTurn(tmp_path / "t.db")
    try:
        alice, bob = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, alice, bob)
        other.take()
        pending = asyncio.ensure_future(store.append_message(draft(chat, alice, "after the turn")))
        await asyncio.sleep(0.3)
        assert not pending.done()  # still waiting for the other turn
        other.drop()
        message, created = await asyncio.wait_for(pending, 5)
        assert created and message.seq == 1
        # The store let its turn go after the commit: another writer gets it at once.
        assert other.try_take()
        other.drop()
        page, _ = await store.list_messages(chat.chat_id, after=0, limit=10)
        assert [m.content for m in page] == ["after the turn"]
    finally:
        other.close()
        await store.close()
