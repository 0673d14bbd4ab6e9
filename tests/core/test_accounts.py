"""Accounts and sliding sessions on a fake clock, over the real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratochat.adapters.store.sqlite import SqliteStore
from stratochat.core.accounts import AccountService, session_key
from stratochat.core.clock import FakeClock
from stratochat.core.errors import Conflict, RateLimited, Unauthorized
from stratochat.core.limits import FailureWindow


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db.sqlite", FakeClock(), purge_interval_s=0)
    await s.start()
    yield s
    await s.close()


def service(store: SqliteStore, clock: FakeClock, ttl: float = 100) -> AccountService:
    return AccountService(
        store,
        store,
        clock,
        session_ttl_s=ttl,
        user_failures=FailureWindow(clock, 3, 60),
        ip_failures=FailureWindow(clock, 5, 60),
    )


async def test_session_slides_and_expires(store: SqliteStore) -> None:
    """Use within the lifetime pushes expiry out; an idle session dies at its expiry."""
    clock = FakeClock()
    accounts = service(store, clock, ttl=100)
    await accounts.register("alice", "password1")
    _, token, session = await accounts.login("alice", "password1", "1.2.3.4")
    assert session.session_id == session_key(token) != token  # only the hash is stored
    for _ in range(5):
        clock.advance(60)
        await accounts.authenticate(token)
    clock.advance(99)
    await accounts.authenticate(token)
    clock.advance(101)
    with pytest.raises(Unauthorized):
        await accounts.authenticate(token)


async def test_logout_notifies_and_kills(store: SqliteStore) -> None:
    clock = FakeClock()
    accounts = service(store, clock)
    ended = []
    accounts.on_logout(ended.append)
    await accounts.register("bob", "password1")
    _, token, session = await accounts.login("bob", "password1", "ip")
    await accounts.logout(session)
    assert ended == [session]
    with pytest.raises(Unauthorized):
        await accounts.authenticate(token)


async def test_limiter_by_account_and_address(store: SqliteStore) -> None:
    """Only failures count; an attacked account locks, others from the same address still sign in."""
    clock = FakeClock()
    accounts = service(store, clock)
    for name in ("carol", "dave"):
        await accounts.register(name, "password1")
    for _ in range(5):
        await accounts.login("carol", "password1", "ip")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            await accounts.login("carol", "wrong-one", "ip")
    with pytest.raises(RateLimited):
        await accounts.login("carol", "password1", "ip")
    await accounts.login("dave", "password1", "ip")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await accounts.login("nobody", "wrong-one", "ip")
    with pytest.raises(RateLimited):  # the address has now failed 5 times
        await accounts.login("dave", "password1", "ip")
    clock.advance(61)
    await accounts.login("carol", "password1", "ip")


async def test_duplicate_username(store: SqliteStore) -> None:
    accounts = service(store, FakeClock())
    await accounts.register("Erin", "password1")
    with pytest.raises(Conflict):
        await accounts.register("erin", "password2")
