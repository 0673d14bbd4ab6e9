"""The Store contract: what core/ports.py promises, checked against any adapter through the port alone.

A test module subclasses ``StoreContract`` and provides the fixtures ``store`` (a started Store), ``clock``
(the FakeClock the store was built with) and ``backend`` (``backend.open()`` starts another instance on the
same data, as another process would).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from stratochat.core.clock import FakeClock
from stratochat.core.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from stratochat.core.models import Chat, FileRecord, FileRef, Message, MessageDraft, Session, Usage, User, utc_day
from stratochat.core.ports import Store

DAY_MS = 86_400_000


@dataclass
class Backend:
    name: str
    open: Callable[[], Awaitable[Store]]


def uid() -> str:
    return uuid.uuid4().hex


async def new_user(store: Store, clock: FakeClock, name: str | None = None, **kw: Any) -> User:
    user = User(uid(), name or f"u{uid()[:12]}", created_at=clock.now_ms(), password_hash="$argon2id$x", **kw)
    await store.create_user(user)
    return user


async def new_chat(store: Store, clock: FakeClock, *members: User, title: str | None = None) -> Chat:
    ids = tuple(sorted(m.user_id for m in members))
    direct = len(ids) == 2 and title is None
    chat = Chat(
        chat_id=uid(),
        is_group=not direct,
        title=title,
        member_ids=ids,
        created_at=clock.now_ms(),
        created_by=members[0].user_id,
        direct_key=":".join(ids) if direct else None,
    )
    stored, created = await store.create_chat(chat)
    assert created
    return stored


def draft(
    chat: Chat,
    sender: User,
    content: str = "hello",
    cmid: str | None = None,
    at: int | None = None,
    file: FileRef | None = None,
) -> MessageDraft:
    return MessageDraft(
        message_id=uid(),
        chat_id=chat.chat_id,
        sender_id=sender.user_id,
        sender=sender.username,
        message_type="file" if file else "text",
        content=content,
        created_at=at if at is not None else 1_780_000_000_000,
        client_msg_id=cmid,
        file=file,
    )


async def outcomes(coros: list[Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*coros, return_exceptions=True))


class StoreContract:
    # users --------------------------------------------------------------------------------------
    async def test_user_round_trips_by_id_name_and_external_id(self, store: Store, clock: FakeClock) -> None:
        """A stored user reads back equal by id, by username and by external id."""
        user = await new_user(store, clock, external_id="https://idp.example|sub-1")
        assert await store.get_user(user.user_id) == user
        assert await store.get_user_by_username(user.username) == user
        assert await store.get_user_by_external_id("https://idp.example|sub-1") == user
        assert await store.get_user(uid()) is None
        assert await store.get_user_by_username("nobody-here") is None
        assert await store.get_user_by_external_id("https://idp.example|other") is None

    async def test_taken_username_conflicts_and_stores_nothing(self, store: Store, clock: FakeClock) -> None:
        """A second user with a taken username raises Conflict and is not stored."""
        first = await new_user(store, clock, "alice")
        second = User(uid(), "alice", created_at=clock.now_ms())
        with pytest.raises(Conflict):
            await store.create_user(second)
        assert await store.get_user(second.user_id) is None
        assert await store.get_user_by_username("alice") == first

    async def test_username_race_has_one_winner(self, store: Store, clock: FakeClock) -> None:
        """Of ten concurrent creations of one username exactly one succeeds; the others store nothing."""
        users = [User(uid(), "contested", created_at=clock.now_ms()) for _ in range(10)]
        results = await outcomes([store.create_user(u) for u in users])
        winners = [u for u, r in zip(users, results, strict=True) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, Conflict) for r in results if r is not None)
        assert await store.get_user_by_username("contested") == winners[0]
        found = await store.get_users([u.user_id for u in users])
        assert list(found) == [winners[0].user_id]

    async def test_get_users_leaves_out_unknown_ids(self, store: Store, clock: FakeClock) -> None:
        """get_users returns the known users by id and skips unknown ones."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        assert await store.get_users([a.user_id, uid(), b.user_id, a.user_id]) == {a.user_id: a, b.user_id: b}
        assert await store.get_users([]) == {}

    async def test_set_premium(self, store: Store, clock: FakeClock) -> None:
        """set_premium changes the tier that later reads see."""
        user = await new_user(store, clock)
        await store.set_premium(user.user_id, True)
        assert (await store.get_user(user.user_id)) == replace(user, is_premium=True)
        await store.set_premium(user.user_id, False)
        assert (await store.get_user_by_username(user.username)) == user

    async def test_list_users_by_username_with_paging(self, store: Store, clock: FakeClock) -> None:
        """list_users pages through every user in username order."""
        names = ["delta", "alpha", "echo", "charlie", "bravo"]
        for name in names:
            await new_user(store, clock, name)
        first = await store.list_users(2)
        assert [u.username for u in first] == ["alpha", "bravo"]
        rest = await store.list_users(10, after="bravo")
        assert [u.username for u in rest] == ["charlie", "delta", "echo"]
        assert await store.list_users(10, after="echo") == []

    # sessions -----------------------------------------------------------------------------------
    async def test_session_lifecycle(self, store: Store, clock: FakeClock) -> None:
        """A session reads back equal, extends forward, and is gone after a (repeatable) delete."""
        user = await new_user(store, clock)
        now = clock.now_ms()
        session = Session(uid(), user.user_id, now, now + 60_000, {"id_token": "t", "n": 1})
        await store.create_session(session)
        assert await store.get_session(session.session_id) == session
        await store.extend_session(session.session_id, now + 120_000)
        assert await store.get_session(session.session_id) == replace(session, expires_at=now + 120_000)
        await store.delete_session(session.session_id)
        assert await store.get_session(session.session_id) is None
        await store.delete_session(session.session_id)
        await store.delete_session(uid())

    async def test_extending_a_missing_session_creates_nothing(self, store: Store, clock: FakeClock) -> None:
        """extend_session of an unknown id leaves it unknown."""
        sid = uid()
        await store.extend_session(sid, clock.now_ms() + 60_000)
        assert await store.get_session(sid) is None

    async def test_expired_session_may_linger_but_only_as_expired(self, store: Store, clock: FakeClock) -> None:
        """Past its expiry a session reads as missing or as expired, never as live."""
        user = await new_user(store, clock)
        now = clock.now_ms()
        session = Session(uid(), user.user_id, now, now + 4_000)
        await store.create_session(session)
        clock.advance(5)
        got = await store.get_session(session.session_id)
        assert got is None or (got == session and got.expires_at <= clock.now_ms())

    # chats --------------------------------------------------------------------------------------
    async def test_chat_round_trips_with_members_at_zero(self, store: Store, clock: FakeClock) -> None:
        """A new group chat reads back equal and is in every member's inbox with read marker 0."""
        a, b, c = [await new_user(store, clock) for _ in range(3)]
        chat = await new_chat(store, clock, a, b, c, title="Team")
        assert chat.last_seq == 0 and chat.is_group
        assert await store.get_chat(chat.chat_id) == chat
        for member in (a, b, c):
            (entry,) = await store.list_chats_for_user(member.user_id)
            assert entry.chat == chat and entry.read_seq == 0
        assert await store.get_chat(uid()) is None
        assert await store.list_chats_for_user(uid()) == []

    async def test_direct_chat_is_deduplicated(self, store: Store, clock: FakeClock) -> None:
        """A second chat with a taken direct_key is not stored: the existing one comes back with False."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        first = await new_chat(store, clock, a, b)
        again = replace(first, chat_id=uid(), created_by=b.user_id)
        stored, created = await store.create_chat(again)
        assert (stored, created) == (first, False)
        assert await store.get_chat(again.chat_id) is None
        assert [e.chat.chat_id for e in await store.list_chats_for_user(a.user_id)] == [first.chat_id]

    async def test_direct_chat_race_creates_one_chat(self, store: Store, clock: FakeClock) -> None:
        """Ten concurrent creations of one direct chat store one; every caller gets that chat."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        ids = tuple(sorted((a.user_id, b.user_id)))
        chats = [Chat(uid(), False, None, ids, clock.now_ms(), a.user_id, direct_key=":".join(ids)) for _ in range(10)]
        results = await asyncio.gather(*(store.create_chat(c) for c in chats))
        assert sum(created for _, created in results) == 1
        assert len({chat.chat_id for chat, _ in results}) == 1
        for user in (a, b):
            inbox = await store.list_chats_for_user(user.user_id)
            assert [e.chat.chat_id for e in inbox] == [results[0][0].chat_id]

    async def test_inbox_is_ordered_by_latest_activity(self, store: Store, clock: FakeClock) -> None:
        """The inbox lists chats by last message time, else creation time, newest first."""
        a, b, c, d = [await new_user(store, clock) for _ in range(4)]
        old = await new_chat(store, clock, a, b)
        clock.advance(1)
        middle = await new_chat(store, clock, a, c)
        clock.advance(1)
        new = await new_chat(store, clock, a, d)
        assert [e.chat.chat_id for e in await store.list_chats_for_user(a.user_id)] == [
            new.chat_id,
            middle.chat_id,
            old.chat_id,
        ]
        clock.advance(1)
        await store.append_message(draft(old, b, "wake up", at=clock.now_ms()))
        assert [e.chat.chat_id for e in await store.list_chats_for_user(a.user_id)] == [
            old.chat_id,
            new.chat_id,
            middle.chat_id,
        ]

    async def test_read_marker_is_monotonic_and_clamped(self, store: Store, clock: FakeClock) -> None:
        """Read markers never move back nor past last_seq; a non-member or unknown chat is NotFound."""
        a, b, outsider = [await new_user(store, clock) for _ in range(3)]
        chat = await new_chat(store, clock, a, b)
        for i in range(3):
            await store.append_message(draft(chat, a, f"m{i}"))
        assert await store.set_read_seq(chat.chat_id, b.user_id, 2) == 2
        assert await store.set_read_seq(chat.chat_id, b.user_id, 1) == 2
        assert await store.set_read_seq(chat.chat_id, b.user_id, 99) == 3
        assert await store.set_read_seq(chat.chat_id, b.user_id, 0) == 3
        entry = next(e for e in await store.list_chats_for_user(b.user_id) if e.chat.chat_id == chat.chat_id)
        assert entry.read_seq == 3 and entry.unread_count == 0
        with pytest.raises(NotFound):
            await store.set_read_seq(chat.chat_id, outsider.user_id, 1)
        with pytest.raises(NotFound):
            await store.set_read_seq(uid(), a.user_id, 1)

    async def test_contacts_of(self, store: Store, clock: FakeClock) -> None:
        """contacts_of is everyone sharing a chat with the user, without the user."""
        a, b, c, d, loner = [await new_user(store, clock) for _ in range(5)]
        await new_chat(store, clock, a, b)
        await new_chat(store, clock, a, c, d, title="group")
        assert await store.contacts_of(a.user_id) == {b.user_id, c.user_id, d.user_id}
        assert await store.contacts_of(b.user_id) == {a.user_id}
        assert await store.contacts_of(loner.user_id) == set()

    # messages -----------------------------------------------------------------------------------
    async def test_append_gives_seqs_from_one_and_moves_the_chat(self, store: Store, clock: FakeClock) -> None:
        """Appends get seq 1, 2, 3 and move last_seq, the preview, its time and the sender's marker."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        drafts = [draft(chat, a, f"message {i}", at=1_780_000_000_000 + i) for i in range(3)]
        for i, d in enumerate(drafts, start=1):
            message, created = await store.append_message(d)
            assert created and message == Message.from_draft(d, i)
        got = await store.get_chat(chat.chat_id)
        assert got is not None and got.last_seq == 3
        assert got.last_message_content == "message 2" and got.last_message_at == 1_780_000_000_002
        entries = {u: (await store.list_chats_for_user(u))[0] for u in (a.user_id, b.user_id)}
        assert entries[a.user_id].read_seq == 3 and entries[a.user_id].unread_count == 0
        assert entries[b.user_id].read_seq == 0 and entries[b.user_id].unread_count == 3
        assert entries[b.user_id].chat == got

    async def test_submit_calls_then_once_before_the_futures_callbacks(self, store: Store, clock: FakeClock) -> None:
        """``submit_message``'s ``then`` gets the done future (stored, or failed as ``append_message``
        would fail) exactly once, ahead of the future's own done-callbacks."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        seen: list[tuple[str, int]] = []
        outcomes: list[object] = []

        def then(fut: asyncio.Future[tuple[Message, bool]]) -> None:
            assert fut.done()
            seen.append(("then", id(fut)))
            exc = fut.exception()
            outcomes.append(type(exc).__name__ if exc else fut.result()[0].seq)

        futs = [store.submit_message(draft(chat, a, f"m{i}"), then=then) for i in range(3)]
        futs.append(store.submit_message(draft(replace(chat, chat_id="no-such-chat"), a, "x"), then=then))
        for fut in futs:
            fut.add_done_callback(lambda f: seen.append(("callback", id(f))))
        done, _ = await asyncio.wait(futs, timeout=10)
        assert len(done) == 4
        await asyncio.sleep(0)
        assert sorted(outcomes, key=str) == [1, 2, 3, "NotFound"]
        assert len(seen) == 8
        for fut in futs:
            assert seen.index(("then", id(fut))) < seen.index(("callback", id(fut)))

    async def test_long_message_preview_is_its_beginning(self, store: Store, clock: FakeClock) -> None:
        """The preview of a long message is a non-trivial prefix of it; the message itself is whole."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        content = "".join(f"{i:04d} ünïcødé " for i in range(300))
        message, _ = await store.append_message(draft(chat, a, content))
        got = await store.get_chat(chat.chat_id)
        assert got is not None and got.last_message_content is not None
        assert content.startswith(got.last_message_content) and len(got.last_message_content) >= 100
        assert (await store.list_messages(chat.chat_id))[0] == [message]

    async def test_concurrent_appends_are_gapless_and_unique(self, store: Store, clock: FakeClock) -> None:
        """Fifty concurrent appends to one chat get exactly the seqs 1..50, each stored once, in order."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        drafts = [draft(chat, (a, b)[i % 2], f"c{i}") for i in range(50)]
        results = await asyncio.gather(*(store.append_message(d) for d in drafts))
        assert sorted(m.seq for m, _ in results) == list(range(1, 51))
        page, more = await store.list_messages(chat.chat_id, after=0, limit=200)
        assert [m.seq for m in page] == list(range(1, 51)) and not more
        assert {m.message_id for m in page} == {d.message_id for d in drafts}
        assert (await store.get_chat(chat.chat_id)).last_seq == 50  # type: ignore[union-attr]

    async def test_appends_through_two_instances_are_gapless(
        self, store: Store, clock: FakeClock, backend: Backend
    ) -> None:
        """Two store instances on the same data (two processes) appending to one chat never share a seq."""
        other = await backend.open()
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        jobs = [(store, a), (other, b)] * 15
        results = await asyncio.gather(*(s.append_message(draft(chat, u, "x")) for s, u in jobs))
        assert sorted(m.seq for m, _ in results) == list(range(1, 31))
        page, _ = await other.list_messages(chat.chat_id, after=0, limit=200)
        assert [m.seq for m in page] == list(range(1, 31))
        # Each instance sees the other's writes (no stale seq is reused afterwards).
        m, _ = await store.append_message(draft(chat, a, "after"))
        n, _ = await other.append_message(draft(chat, b, "after"))
        assert (m.seq, n.seq) == (31, 32)

    async def test_retry_with_same_client_msg_id_returns_the_original(self, store: Store, clock: FakeClock) -> None:
        """A second append with a stored client_msg_id writes nothing and returns the original with False."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        original, created = await store.append_message(draft(chat, a, "once", cmid="c-1"))
        assert created
        again, created = await store.append_message(draft(chat, a, "different text", cmid="c-1"))
        assert (again, created) == (original, False)
        assert await store.get_by_client_msg_id(chat.chat_id, a.user_id, "c-1") == original
        assert (await store.get_chat(chat.chat_id)).last_seq == 1  # type: ignore[union-attr]
        assert (await store.get_usage(a.user_id, utc_day(original.created_at))).messages_today == 1

    async def test_client_msg_id_is_scoped_to_sender_and_chat(self, store: Store, clock: FakeClock) -> None:
        """The same client_msg_id from another sender or in another chat is a new message."""
        a, b, c = [await new_user(store, clock) for _ in range(3)]
        ab, ac = await new_chat(store, clock, a, b), await new_chat(store, clock, a, c)
        m1, c1 = await store.append_message(draft(ab, a, cmid="same"))
        m2, c2 = await store.append_message(draft(ab, b, cmid="same"))
        m3, c3 = await store.append_message(draft(ac, a, cmid="same"))
        assert c1 and c2 and c3 and len({m1.message_id, m2.message_id, m3.message_id}) == 3
        assert await store.get_by_client_msg_id(ab.chat_id, b.user_id, "same") == m2
        assert await store.get_by_client_msg_id(ab.chat_id, c.user_id, "same") is None
        assert await store.get_by_client_msg_id(ab.chat_id, a.user_id, "other") is None

    async def test_concurrent_retries_store_one_message(self, store: Store, clock: FakeClock) -> None:
        """Twenty concurrent appends with one client_msg_id store one message; all return it."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        results = await asyncio.gather(*(store.append_message(draft(chat, a, cmid="dup")) for _ in range(20)))
        assert sum(created for _, created in results) == 1
        assert len({m for m, _ in results}) == 1
        page, _ = await store.list_messages(chat.chat_id)
        assert [m.seq for m in page] == [1]

    async def test_daily_limit_holds_under_concurrency(self, store: Store, clock: FakeClock) -> None:
        """With a daily limit of 10, fifty concurrent appends store exactly 10 and refuse 40, writing nothing."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        drafts = [draft(chat, a, f"q{i}") for i in range(50)]
        results = await outcomes([store.append_message(d, daily_limit=10) for d in drafts])
        stored = [r for r in results if isinstance(r, tuple)]
        assert len(stored) == 10 and all(isinstance(r, QuotaExceeded) for r in results if r not in stored)
        assert sorted(m.seq for m, _ in stored) == list(range(1, 11))
        assert (await store.get_chat(chat.chat_id)).last_seq == 10  # type: ignore[union-attr]
        assert (await store.get_usage(a.user_id, utc_day(drafts[0].created_at))).messages_today == 10
        # Another sender has a count of its own.
        _, created = await store.append_message(draft(chat, b, "mine"), daily_limit=10)
        assert created

    async def test_retry_is_never_refused_for_the_limit(self, store: Store, clock: FakeClock) -> None:
        """At the daily limit a retry of a stored message still returns it; a new message is refused."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        first, _ = await store.append_message(draft(chat, a, cmid="r1"), daily_limit=2)
        await store.append_message(draft(chat, a, cmid="r2"), daily_limit=2)
        again, created = await store.append_message(draft(chat, a, cmid="r1"), daily_limit=2)
        assert (again, created) == (first, False)
        with pytest.raises(QuotaExceeded):
            await store.append_message(draft(chat, a, cmid="r3"), daily_limit=2)
        # A limit of zero refuses every new message, still not a retry.
        again, created = await store.append_message(draft(chat, a, cmid="r1"), daily_limit=0)
        assert (again, created) == (first, False)
        with pytest.raises(QuotaExceeded):
            await store.append_message(draft(chat, b, cmid="b1"), daily_limit=0)
        assert (await store.get_chat(chat.chat_id)).last_seq == 2  # type: ignore[union-attr]

    async def test_daily_count_follows_the_drafts_utc_day(self, store: Store, clock: FakeClock) -> None:
        """Messages count toward the UTC day of their created_at; a new day starts from zero."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        midnight = (1_780_000_000_000 // DAY_MS + 1) * DAY_MS
        await store.append_message(draft(chat, a, at=midnight - 1), daily_limit=1)
        with pytest.raises(QuotaExceeded):
            await store.append_message(draft(chat, a, at=midnight - 1), daily_limit=1)
        _, created = await store.append_message(draft(chat, a, at=midnight), daily_limit=1)
        assert created
        assert await store.get_usage(a.user_id, utc_day(midnight - 1)) == Usage(1, 0)
        assert await store.get_usage(a.user_id, utc_day(midnight)) == Usage(1, 0)
        assert await store.get_usage(a.user_id, utc_day(midnight + DAY_MS)) == Usage(0, 0)
        assert await store.get_usage(uid(), utc_day(midnight)) == Usage(0, 0)

    async def test_unknown_chat_is_not_found(self, store: Store, clock: FakeClock) -> None:
        """Appending to an unknown chat raises NotFound; its history is empty."""
        a = await new_user(store, clock)
        ghost = Chat(uid(), False, None, (a.user_id,), clock.now_ms(), a.user_id)
        with pytest.raises(NotFound):
            await store.append_message(draft(ghost, a))
        with pytest.raises(NotFound):
            await store.append_message(draft(ghost, a, cmid="x"), daily_limit=5)
        assert await store.list_messages(ghost.chat_id) == ([], False)

    async def test_history_pages_before_and_after(self, store: Store, clock: FakeClock) -> None:
        """list_messages pages oldest-first with before/after cursors and tells whether more exist."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        for i in range(7):
            await store.append_message(draft(chat, a, f"p{i}"))

        async def seqs(**kw: Any) -> tuple[list[int], bool]:
            page, more = await store.list_messages(chat.chat_id, **kw)
            return [m.seq for m in page], more

        assert await seqs(limit=3) == ([5, 6, 7], True)
        assert await seqs(limit=7) == ([1, 2, 3, 4, 5, 6, 7], False)
        assert await seqs(before=5, limit=3) == ([2, 3, 4], True)
        assert await seqs(before=2, limit=3) == ([1], False)
        assert await seqs(before=1, limit=3) == ([], False)
        assert await seqs(after=0, limit=3) == ([1, 2, 3], True)
        assert await seqs(after=4, limit=3) == ([5, 6, 7], False)
        assert await seqs(after=6, limit=3) == ([7], False)
        assert await seqs(after=7, limit=3) == ([], False)
        assert await seqs(after=0) == ([1, 2, 3, 4, 5, 6, 7], False)

    async def test_ping(self, store: Store) -> None:
        """ping returns while the backend answers."""
        await store.ping()

    # files --------------------------------------------------------------------------------------
    async def _file(self, store: Store, clock: FakeClock, chat: Chat, uploader: User, **kw: Any) -> FileRecord:
        fid = uid()
        record = FileRecord(
            file_id=fid,
            chat_id=chat.chat_id,
            uploader_id=uploader.user_id,
            filename=kw.pop("filename", "report.pdf"),
            content_type=kw.pop("content_type", "application/pdf"),
            size=kw.pop("size", 1000),
            key=f"files/{fid}",
            created_at=clock.now_ms(),
            expires_at=kw.pop("expires_at", clock.now_ms() + 300_000),
        )
        await store.create_file(record)
        return record

    async def test_file_records_round_trip_and_purge_listing(self, store: Store, clock: FakeClock) -> None:
        """Pending records read back, are listed by expiry once expired, and only pending ones are deleted."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        now = clock.now_ms()
        late = await self._file(store, clock, chat, a, expires_at=now + 2_000)
        early = await self._file(store, clock, chat, a, expires_at=now + 1_000)
        live = await self._file(store, clock, chat, a, expires_at=now + 60_000)
        assert await store.get_file(early.file_id) == early
        assert await store.get_file(uid()) is None
        with pytest.raises(Conflict):
            await store.create_file(replace(live, chat_id=uid()))
        assert await store.expired_files(now + 5_000) == [early, late]
        assert await store.expired_files(now + 5_000, limit=1) == [early]
        assert await store.expired_files(now) == []
        await store.delete_pending_files([early.file_id, uid()])
        assert await store.get_file(early.file_id) is None
        assert await store.expired_files(now + 5_000) == [late]

    async def test_file_message_takes_its_grant_and_charges_storage(self, store: Store, clock: FakeClock) -> None:
        """Sending a file flips its record to sent and charges its size once; the record is then kept."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        rec = await self._file(store, clock, chat, a, size=1234)
        d = draft(chat, a, "", cmid="f1", at=clock.now_ms(), file=rec.ref())
        message, created = await store.append_message(d, storage_limit=10_000)
        assert created and message.file == rec.ref() and message.message_type == "file"
        assert await store.get_file(rec.file_id) == replace(rec, status="sent", message_id=d.message_id)
        got = await store.get_chat(chat.chat_id)
        assert got is not None and got.last_message_content == "report.pdf"
        day = utc_day(d.created_at)
        assert await store.get_usage(a.user_id, day) == Usage(1, 1234)
        again, created = await store.append_message(replace(d, message_id=uid()), storage_limit=10_000)
        assert (again, created) == (message, False)
        with pytest.raises(BadRequest):  # already sent, by a new message
            await store.append_message(draft(chat, a, "", at=clock.now_ms(), file=rec.ref()))
        await store.delete_pending_files([rec.file_id])
        assert await store.get_file(rec.file_id) is not None
        assert await store.expired_files(clock.now_ms() + 10**9) == []
        assert await store.get_usage(a.user_id, day) == Usage(1, 1234)

    async def test_invalid_file_messages_write_nothing(self, store: Store, clock: FakeClock) -> None:
        """A foreign, unknown, misdeclared, expired or other-chat file is BadRequest; over quota is QuotaExceeded."""
        a, b, c = [await new_user(store, clock) for _ in range(3)]
        chat, other_chat = await new_chat(store, clock, a, b), await new_chat(store, clock, a, c)
        now = clock.now_ms()
        rec = await self._file(store, clock, chat, a, size=600)
        elsewhere = await self._file(store, clock, other_chat, a)
        expired = await self._file(store, clock, chat, a, expires_at=now + 10)
        bad = [
            draft(chat, b, "", at=now, file=rec.ref()),  # uploaded by someone else
            draft(chat, a, "", at=now, file=FileRef(uid(), "x.pdf", "application/pdf", 1)),  # unknown
            draft(chat, a, "", at=now, file=replace(rec.ref(), size=599)),  # not what was granted
            draft(chat, a, "", at=now, file=elsewhere.ref()),  # granted for another chat
            draft(chat, a, "", at=now + 10, file=expired.ref()),  # past its expiry
        ]
        for d in bad:
            with pytest.raises(BadRequest):
                await store.append_message(d)
        with pytest.raises(QuotaExceeded):
            await store.append_message(draft(chat, a, "", at=now, file=rec.ref()), storage_limit=599)
        assert (await store.get_chat(chat.chat_id)).last_seq == 0  # type: ignore[union-attr]
        assert await store.get_usage(a.user_id, utc_day(now)) == Usage(0, 0)
        assert (await store.get_file(rec.file_id)) == rec
        _, created = await store.append_message(draft(chat, a, "", at=now, file=rec.ref()), storage_limit=600)
        assert created

    async def test_concurrent_sends_of_one_file_store_one_message(self, store: Store, clock: FakeClock) -> None:
        """Ten concurrent messages carrying one file store one; the rest are BadRequest; it is charged once."""
        a, b = await new_user(store, clock), await new_user(store, clock)
        chat = await new_chat(store, clock, a, b)
        rec = await self._file(store, clock, chat, a, size=100)
        results = await outcomes(
            [store.append_message(draft(chat, a, "", at=clock.now_ms(), file=rec.ref())) for _ in range(10)]
        )
        assert sum(isinstance(r, tuple) for r in results) == 1
        assert all(isinstance(r, BadRequest) for r in results if not isinstance(r, tuple))
        assert (await store.get_usage(a.user_id, utc_day(clock.now_ms()))).storage_bytes == 100
