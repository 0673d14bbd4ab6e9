"""Password hashing with argon2id, off the event loop (one hash costs tens of milliseconds)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's minimum argon2id profile (19 MiB, t=2, p=1): ~20 ms here, so logins stay cheap for a
# server and expensive for an offline attacker.
_hasher = _Argon2(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when the username does not exist, so a miss costs as much as a wrong password
# and timing does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("stratochat-timing-equaliser")


class PasswordHasher:
    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(_hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(_verify, password_hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
