"""Local accounts and server-side sessions."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from .errors import BadRequest, Conflict, RateLimited, Unauthorized
from .limits import FailureWindow, TokenBuckets
from .models import Session, User
from .passwords import PasswordHasher
from .ports import Clock, SessionStore, UserStore

USERNAME_RE = re.compile(r"^[a-z0-9_.\-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128


def session_key(token: str) -> str:
    """What the store keeps for a token: its SHA-256, so a leaked table holds no usable session."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_username(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadRequest("username must be a string")
    name = raw.strip().lower()
    if not USERNAME_RE.match(name):
        raise BadRequest("username must be 3-32 characters of a-z, 0-9, '_', '.' or '-'")
    return name


def check_password(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadRequest("password must be a string")
    if not PASSWORD_MIN <= len(raw) <= PASSWORD_MAX:
        raise BadRequest(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    return raw


class AccountService:
    """Register, sign in, authenticate and sign out. Sessions slide: each use pushes expiry out."""

    def __init__(
        self,
        users: UserStore,
        sessions: SessionStore,
        clock: Clock,
        *,
        session_ttl_s: float,
        user_failures: FailureWindow,
        ip_failures: FailureWindow,
        hasher: PasswordHasher | None = None,
        signups: TokenBuckets | None = None,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._clock = clock
        self._ttl_ms = max(1, round(session_ttl_s * 1000))
        # Sliding expiry costs a write; only pay it once a tenth of the lifetime (at most a minute) passed.
        self._refresh_ms = min(60_000, self._ttl_ms // 10)
        self._user_failures = user_failures
        self._ip_failures = ip_failures
        self._hasher = hasher or PasswordHasher()
        # Sign-ups per client address (a token bucket); None: unlimited (the admin CLI).
        self._signups = signups
        self._logout_listeners: list[Callable[[Session], None]] = []

    @property
    def session_ttl_ms(self) -> int:
        return self._ttl_ms

    def on_logout(self, listener: Callable[[Session], None]) -> None:
        """Called with each session ended by logout (the hub closes its sockets)."""
        self._logout_listeners.append(listener)

    async def register(self, username: object, password: object, ip: str | None = None) -> User:
        name = normalise_username(username)
        pw = check_password(password)
        if ip is not None and self._signups is not None:
            wait = self._signups.take(f"ip:{ip}")
            if wait > 0:
                raise RateLimited("too many sign-ups from this address; try again later", wait)
        if await self._users.get_user_by_username(name) is not None:
            raise Conflict(f"username '{name}' is taken")
        user = User(
            user_id=uuid.uuid4().hex,
            username=name,
            created_at=self._clock.now_ms(),
            password_hash=await self._hasher.hash(pw),
        )
        await self._users.create_user(user)  # raises Conflict if someone raced us to the name
        return user

    async def login(self, username: object, password: object, ip: str) -> tuple[User, str, Session]:
        """Check the password. Only failures count toward the limiters, so a correct password is only
        refused while its account (or the caller's address) is under attack."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        name = username.strip().lower()
        self._ip_failures.check(f"ip:{ip}", "address")
        self._user_failures.check(f"user:{name}", "account")
        user = await self._users.get_user_by_username(name) if USERNAME_RE.match(name) else None
        ok = await self._hasher.verify(user.password_hash if user else None, password[: PASSWORD_MAX * 4])
        if not ok or user is None:
            self._ip_failures.record_failure(f"ip:{ip}")
            self._user_failures.record_failure(f"user:{name}")
            raise Unauthorized("wrong username or password")
        token, session = await self.start_session(user)
        return user, token, session

    async def start_session(self, user: User, data: dict[str, Any] | None = None) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = self._clock.now_ms()
        session = Session(session_key(token), user.user_id, now, now + self._ttl_ms, data)
        await self._sessions.create_session(session)
        return token, session

    async def authenticate(self, token: str | None) -> tuple[User, Session]:
        """The user and live session behind a token, sliding its expiry; ``Unauthorized`` otherwise."""
        if not token or len(token) > 256:
            raise Unauthorized("sign in first")
        session = await self.check_session(session_key(token))
        if session is None:
            raise Unauthorized("session expired or signed out; sign in again")
        user = await self._users.get_user(session.user_id)
        if user is None:
            raise Unauthorized("account no longer exists")
        return user, await self.touch(session)

    async def check_session(self, session_id: str) -> Session | None:
        session = await self._sessions.get_session(session_id)
        if session is None or session.expires_at <= self._clock.now_ms():
            return None
        return session

    async def touch(self, session: Session) -> Session:
        """Slide the session's expiry if enough of its lifetime has passed since the last slide."""
        now = self._clock.now_ms()
        if session.expires_at - now > self._ttl_ms - self._refresh_ms:
            return session
        expires = now + self._ttl_ms
        await self._sessions.extend_session(session.session_id, expires)
        return Session(session.session_id, session.user_id, session.created_at, expires, session.data)

    async def logout(self, session: Session) -> None:
        await self._sessions.delete_session(session.session_id)
        for listener in self._logout_listeners:
            listener(session)
