"""Sign-in through an identity provider: the verified identity becomes a local user and a session.

A provider's user is linked by ``external_id = "<issuer>|<sub>"``. A new one gets ``user_id = sub`` (when
that is a usable, free id) and a username derived from the claims. Local accounts are untouched.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .accounts import USERNAME_RE, AccountService
from .errors import Conflict
from .models import Session, User
from .ports import Clock, IdentityProvider, LoginStart, UserStore, VerifiedIdentity

# Claims a username may come from, best first (Cognito's own, then the standard ones).
USERNAME_CLAIMS = ("cognito:username", "preferred_username", "email")
GROUP_CLAIMS = ("cognito:groups", "groups")
_NOT_USERNAME = re.compile(r"[^a-z0-9_.\-]+")
_USABLE_ID = re.compile(r"^[A-Za-z0-9._~@:\-]{1,128}$")


def sanitise_username(raw: str) -> str | None:
    """``raw`` squeezed into the username rules (3-32 of a-z 0-9 _ . -), or None when too little is left."""
    ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    name = _NOT_USERNAME.sub("_", ascii_only.strip().lower())
    name = re.sub(r"_{2,}", "_", name).strip("_.-")[:32].rstrip("_.-")
    return name if USERNAME_RE.match(name) else None


def username_bases(claims: Mapping[str, Any], subject: str) -> list[str]:
    """Usernames to try, in order, before de-duplication suffixes."""
    bases: list[str] = []
    for claim in USERNAME_CLAIMS:
        value = claims.get(claim)
        if not isinstance(value, str) or not value.strip():
            continue
        if claim == "email":
            value = value.partition("@")[0]
        elif value == subject:
            continue  # a pool that signs in by email makes cognito:username the opaque sub
        name = sanitise_username(value)
        if name and name not in bases:
            bases.append(name)
    return bases or ["user"]


def username_candidates(bases: list[str]) -> Iterator[str]:
    yield from bases
    first = bases[0]
    for n in range(2, 21):
        suffix = f"-{n}"
        yield first[: 32 - len(suffix)] + suffix
    for _ in range(10):
        suffix = f"-{secrets.token_hex(4)}"
        yield first[: 32 - len(suffix)] + suffix


def groups_of(claims: Mapping[str, Any]) -> set[str]:
    for claim in GROUP_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str):
            return set(value.split())
        if isinstance(value, list):
            return {g for g in value if isinstance(g, str)}
    return set()


class IdentityService:
    """Log in through the identity provider: begin (redirect), finish (code -> user + session), end.

    Premium: membership of ``premium_group`` grants it at each sign-in. Leaving the group does not take
    it away (premium may also have been granted by an operator); ``stratochat users set-premium --off``
    does."""

    def __init__(
        self,
        provider: IdentityProvider,
        users: UserStore,
        accounts: AccountService,
        clock: Clock,
        *,
        premium_group: str | None = "premium",
    ) -> None:
        self._provider = provider
        self._users = users
        self._accounts = accounts
        self._clock = clock
        self._premium_group = premium_group

    @property
    def provider(self) -> IdentityProvider:
        return self._provider

    async def start(self) -> None:
        await self._provider.start()

    async def close(self) -> None:
        await self._provider.close()

    async def begin_login(self, redirect_uri: str) -> LoginStart:
        return await self._provider.begin_login(redirect_uri)

    async def finish_login(
        self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str
    ) -> tuple[User, str, Session]:
        identity = await self._provider.finish_login(
            code, redirect_uri=redirect_uri, code_verifier=code_verifier, nonce=nonce
        )
        user = await self.link_user(identity)
        # Kept server-side with the session (never sent to the browser): the ID token is the hint that
        # ends the provider's session at logout.
        data: dict[str, Any] = {"idp": identity.issuer, **identity.tokens}
        token, session = await self._accounts.start_session(user, data=data)
        return user, token, session

    async def link_user(self, identity: VerifiedIdentity) -> User:
        """The local user of this identity, created on its first sign-in."""
        external_id = f"{identity.issuer}|{identity.subject}"
        user = await self._users.get_user_by_external_id(external_id)
        if user is None:
            user = await self._create_user(identity, external_id)
        if self._premium_group and self._premium_group in groups_of(identity.claims) and not user.is_premium:
            await self._users.set_premium(user.user_id, True)
            user = replace(user, is_premium=True)
        return user

    async def _create_user(self, identity: VerifiedIdentity, external_id: str) -> User:
        user_id = identity.subject
        if not _USABLE_ID.match(user_id) or await self._users.get_user(user_id) is not None:
            user_id = uuid.uuid4().hex  # sub taken by another account (another issuer) or unfit for ids
        for name in username_candidates(username_bases(identity.claims, identity.subject)):
            if await self._users.get_user_by_username(name) is not None:
                continue
            user = User(user_id=user_id, username=name, created_at=self._clock.now_ms(), external_id=external_id)
            try:
                await self._users.create_user(user)
                return user
            except Conflict:
                # The name was taken meanwhile, or this same identity signed in at the same time
                # elsewhere (another tab or node) and won the race.
                raced = await self._users.get_user_by_external_id(external_id)
                if raced is not None:
                    return raced
                if await self._users.get_user(user_id) is not None:
                    user_id = uuid.uuid4().hex
        raise Conflict("no free username could be derived for this account; ask an operator")

    async def end_session_url(self, session: Session, post_logout_redirect_uri: str) -> str | None:
        """Where the provider ends its own session, for a session that came from it; else None."""
        data = session.data or {}
        if str(data.get("idp", "")).rstrip("/") != self._provider.issuer.rstrip("/"):
            return None
        id_token = data.get("id_token")
        return await self._provider.end_session_url(
            id_token if isinstance(id_token, str) else None, post_logout_redirect_uri
        )
