"""Linking identity-provider users to local users (core/identity.py) over the real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stratochat.adapters.store.sqlite import SqliteStore
from stratochat.core.accounts import AccountService
from stratochat.core.clock import FakeClock
from stratochat.core.identity import IdentityService, sanitise_username, username_bases
from stratochat.core.limits import FailureWindow
from stratochat.core.models import User
from stratochat.core.ports import LoginStart, VerifiedIdentity

ISSUER = "https://idp.example.test"


class StubProvider:
    """Answers finish_login with a fixed identity (the protocol itself is tested elsewhere)."""

    name = "Stub"
    issuer = ISSUER

    def __init__(self, identity: VerifiedIdentity) -> None:
        self.identity = identity

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def begin_login(self, redirect_uri: str) -> LoginStart:
        return LoginStart(url="https://idp.example.test/auth", state="s", nonce="n", code_verifier="v" * 43)

    async def finish_login(self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str) -> VerifiedIdentity:
        return self.identity

    async def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        return f"https://idp.example.test/logout?hint={id_token}"


def identity(sub: str, **claims: Any) -> VerifiedIdentity:
    return VerifiedIdentity(issuer=ISSUER, subject=sub, claims={"sub": sub, **claims}, tokens={"id_token": "tok"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db.sqlite", FakeClock())
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def service(
    store: SqliteStore, ident: VerifiedIdentity | None = None, premium_group: str | None = "premium"
) -> IdentityService:
    clock = FakeClock()
    accounts = AccountService(
        store,
        store,
        clock,
        session_ttl_s=3600,
        user_failures=FailureWindow(clock, 0, 1),
        ip_failures=FailureWindow(clock, 0, 1),
    )
    return IdentityService(StubProvider(ident or identity("x")), store, accounts, clock, premium_group=premium_group)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice", "alice"),
        ("Alice Smith", "alice_smith"),
        ("José.Núñez", "jose.nunez"),
        ("a+b@c", "a_b_c"),
        ("__x.y-z__", "x.y-z"),
        ("x" * 40, "x" * 32),
        ("ab", None),
        ("日本", None),
        ("", None),
    ],
)
def test_sanitise_username(raw: str, expected: str | None) -> None:
    """Claims are squeezed into the username rules, or give nothing when too little is left."""
    assert sanitise_username(raw) == expected


def test_username_sources_in_order() -> None:
    """cognito:username, then preferred_username, then the email's local part; an opaque sub is skipped."""
    claims: Mapping[str, Any] = {"cognito:username": "Bob", "preferred_username": "bobby", "email": "rob@x.test"}
    assert username_bases(claims, "sub-1") == ["bob", "bobby", "rob"]
    uuid_sub = "3f1c2b9e-0000-4000-8000-000000000000"
    assert username_bases({"cognito:username": uuid_sub, "email": "Carol.D@x.test"}, uuid_sub) == ["carol.d"]
    assert username_bases({}, "s") == ["user"]


async def test_new_user_gets_sub_as_id_and_is_linked(store: SqliteStore) -> None:
    """A first sign-in creates the user with user_id = sub and external_id = issuer|sub; the next one finds it."""
    svc = service(store)
    user = await svc.link_user(identity("sub-42", preferred_username="Erin"))
    assert (user.user_id, user.username, user.external_id) == ("sub-42", "erin", f"{ISSUER}|sub-42")
    assert await store.get_user("sub-42") == user
    again = await svc.link_user(identity("sub-42", preferred_username="renamed"))
    assert again == user


async def test_taken_names_and_ids_are_avoided(store: SqliteStore) -> None:
    """A taken username gets a numbered suffix; a sub that is already another account's id gets a fresh id."""
    await store.create_user(User(user_id="sub-7", username="someone", created_at=1))
    await store.create_user(User(user_id="u1", username="frank", created_at=1))
    await store.create_user(User(user_id="u2", username="frank-2", created_at=1))
    svc = service(store)
    user = await svc.link_user(identity("sub-7", preferred_username="frank"))
    assert user.username == "frank-3"
    assert user.user_id != "sub-7" and len(user.user_id) == 32
    assert user.external_id == f"{ISSUER}|sub-7"


async def test_concurrent_first_sign_ins_make_one_user(store: SqliteStore) -> None:
    """Two sign-ins of the same new identity at once (two tabs) end on the same single user."""
    svc = service(store)
    users = await asyncio.gather(*(svc.link_user(identity("sub-9", email="gail@x.test")) for _ in range(4)))
    assert {u.user_id for u in users} == {"sub-9"}
    assert [u.username for u in await store.list_users()] == ["gail"]


async def test_premium_group_grants_premium(store: SqliteStore) -> None:
    """cognito:groups (or groups) containing the premium group grants premium; other groups do not."""
    svc = service(store)
    assert (await svc.link_user(identity("a", email="a1@x.test", **{"cognito:groups": ["staff"]}))).is_premium is False
    assert (await svc.link_user(identity("a", **{"cognito:groups": ["staff", "premium"]}))).is_premium is True
    assert (await store.get_user("a")).is_premium is True  # type: ignore[union-attr]
    assert (await svc.link_user(identity("b", email="b1@x.test", groups=["premium"]))).is_premium is True
    off = service(store, premium_group=None)
    assert (await off.link_user(identity("c", email="c1@x.test", groups=["premium"]))).is_premium is False


async def test_finish_login_keeps_tokens_with_the_session(store: SqliteStore) -> None:
    """The session stores the provider's tokens server-side, and logout finds the provider's end-session URL."""
    ident = identity("sub-5", email="hal@x.test")
    svc = service(store, ident)
    user, token, session = await svc.finish_login("code", redirect_uri="r", code_verifier="v", nonce="n")
    assert user.username == "hal" and token
    stored = await store.get_session(session.session_id)
    assert stored is not None and stored.data == {"idp": ISSUER, "id_token": "tok"}
    assert await svc.end_session_url(stored, "https://chat/") == "https://idp.example.test/logout?hint=tok"
    local = stored.__class__(stored.session_id, stored.user_id, 0, 1, None)
    assert await svc.end_session_url(local, "https://chat/") is None
