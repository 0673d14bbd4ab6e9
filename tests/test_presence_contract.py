"""The PresenceStore contract (tests/contracts/presence.py) against every adapter: MemoryPresence,
RedisPresence on a single Redis and on a Redis Cluster. Expiry applies to the Redis ones only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from stratochat.adapters.presence.memory import MemoryPresence
from stratochat.core.clock import FakeClock
from tests.contracts.presence import ExpiringPresenceContract, PresenceContract, PresenceUnderTest

TTL_S = 30.0


async def _make(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[PresenceUnderTest]:
    clock = FakeClock()
    if kind == "memory":
        yield PresenceUnderTest(MemoryPresence(), clock, TTL_S)
        return
    from stratochat.adapters.presence.redis import RedisPresence

    url = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster").url
    store = RedisPresence(url, clock, ttl_s=TTL_S, prefix=f"t{uuid.uuid4().hex[:8]}:")
    try:
        yield PresenceUnderTest(store, clock, TTL_S)
    finally:
        await store.close()


class TestPresenceContract(PresenceContract):
    @pytest.fixture(params=["memory", "redis", "redis-cluster"])
    async def presence(self, request: pytest.FixtureRequest) -> AsyncIterator[PresenceUnderTest]:
        async for p in _make(request.param, request):
            yield p


class TestExpiringPresenceContract(ExpiringPresenceContract):
    @pytest.fixture(params=["redis", "redis-cluster"])
    async def presence(self, request: pytest.FixtureRequest) -> AsyncIterator[PresenceUnderTest]:
        async for p in _make(request.param, request):
            yield p
