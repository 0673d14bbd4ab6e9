"""The PresenceStore contract, written against ``stratochat.core.ports.PresenceStore`` only.

``tests/test_presence_contract.py`` runs ``PresenceContract`` once per adapter and
``ExpiringPresenceContract`` once per adapter whose entries expire (all but the in-process one, whose
entries die with the process). Time is a ``FakeClock`` that the tests move; each test uses fresh ids.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from stratochat.core.clock import FakeClock
from stratochat.core.ports import PresenceStore


class PresenceUnderTest(NamedTuple):
    store: PresenceStore
    clock: FakeClock
    ttl_s: float


def uid() -> str:
    return uuid.uuid4().hex


class PresenceContract:
    async def test_online_after_set_online_offline_after_set_offline(self, presence: PresenceUnderTest) -> None:
        """A user is online from set_online until set_offline."""
        p, u, other = presence.store, uid(), uid()
        assert await p.online([u, other]) == set()
        await p.set_online(u, "n1")
        assert await p.online([u, other]) == {u}
        await p.set_offline(u, "n1")
        assert await p.online([u, other]) == set()

    async def test_online_while_any_node_holds_the_user(self, presence: PresenceUnderTest) -> None:
        """Entries belong to nodes: the user stays online until the last node lets go."""
        p, u = presence.store, uid()
        await p.set_online(u, "n1")
        await p.set_online(u, "n2")
        await p.set_offline(u, "n1")
        assert await p.online([u]) == {u}
        await p.set_offline(u, "n2")
        assert await p.online([u]) == set()

    async def test_set_offline_is_idempotent(self, presence: PresenceUnderTest) -> None:
        """Going offline twice, or on a node that never had the user, is harmless."""
        p, u = presence.store, uid()
        await p.set_offline(u, "n1")
        await p.set_online(u, "n1")
        await p.set_offline(u, "n2")
        assert await p.online([u]) == {u}
        await p.set_offline(u, "n1")
        await p.set_offline(u, "n1")
        assert await p.online([u]) == set()

    async def test_online_answers_for_many_users(self, presence: PresenceUnderTest) -> None:
        """``online`` returns exactly the subset online, for many ids at once, repeats and empty input."""
        p = presence.store
        users = [uid() for _ in range(50)]
        for u in users[::2]:
            await p.set_online(u, "n1")
        assert await p.online(users + users[:5]) == set(users[::2])
        assert await p.online([]) == set()

    async def test_touch_of_online_users_keeps_them_online(self, presence: PresenceUnderTest) -> None:
        """Touching entries never takes anyone offline, and touching nobody is a no-op."""
        p, u = presence.store, uid()
        await p.set_online(u, "n1")
        await p.touch([u], "n1")
        await p.touch([], "n1")
        assert await p.online([u]) == {u}


class ExpiringPresenceContract:
    async def test_entries_expire_unless_touched(self, presence: PresenceUnderTest) -> None:
        """A node that stops touching its entries (it died) loses its users after the timeout."""
        p, clock, ttl = presence
        u = uid()
        await p.set_online(u, "n1")
        clock.advance(ttl * 0.6)
        await p.touch([u], "n1")
        clock.advance(ttl * 0.6)
        assert await p.online([u]) == {u}  # touched in time
        clock.advance(ttl * 0.5)
        assert await p.online([u]) == set()

    async def test_one_dead_node_does_not_take_the_user_offline(self, presence: PresenceUnderTest) -> None:
        """Expiry is per node: the user stays online through a node that still touches its entry."""
        p, clock, ttl = presence
        u = uid()
        await p.set_online(u, "dead")
        await p.set_online(u, "alive")
        for _ in range(3):
            clock.advance(ttl * 0.5)
            await p.touch([u], "alive")
        assert await p.online([u]) == {u}
        await p.set_offline(u, "alive")
        assert await p.online([u]) == set()  # the dead node's entry is gone too

    async def test_touch_brings_a_lost_entry_back(self, presence: PresenceUnderTest) -> None:
        """Touch re-creates an entry that expired (a long pause, or a store that lost its data)."""
        p, clock, ttl = presence
        u = uid()
        await p.set_online(u, "n1")
        clock.advance(ttl * 2)
        assert await p.online([u]) == set()
        await p.touch([u], "n1")
        assert await p.online([u]) == {u}
