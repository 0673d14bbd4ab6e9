"""Presence in Redis, shared by every node (single Redis or Redis Cluster).

How it differs from the port: each user is one sorted set ``<prefix>p:<user_id>`` whose members are
node ids scored with the time (ms, from the injected clock) at which that node's entry expires. A node
that stops touching its entries (it died) drops out after ``ttl_s``; the key itself also expires in
Redis, so users nobody touches leave nothing behind. Entries are re-added by ``touch``, so presence
heals by itself after Redis lost its data (a restart without persistence).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

from redis.asyncio import Redis

from ...core.ports import Clock
from ..broker.redis import DEFAULT_PREFIX, RedisClient, open_client

DEFAULT_TTL_S = 30.0


class RedisPresence:
    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool | None = None,
    ) -> None:
        self._url = url
        self._clock = clock
        self._ttl_ms = int(ttl_s * 1000)
        self._prefix = prefix
        self._cluster = cluster
        self._client: RedisClient | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    def _key(self, user_id: str) -> str:
        return f"{self._prefix}p:{user_id}"

    async def _redis(self) -> RedisClient:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await open_client(self._url, self._cluster)
        return self._client

    def _pipeline(self, client: RedisClient) -> Any:
        # No MULTI: each key is independent, and a cluster cannot run one across slots.
        return client.pipeline(transaction=False) if isinstance(client, Redis) else client.pipeline()

    async def set_online(self, user_id: str, node_id: str) -> None:
        await self.touch([user_id], node_id)

    async def set_offline(self, user_id: str, node_id: str) -> None:
        client = await self._redis()
        await client.zrem(self._key(user_id), node_id)

    async def online(self, user_ids: Collection[str]) -> set[str]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        now = self._clock.now_ms()
        client = await self._redis()
        async with self._pipeline(client) as pipe:
            for uid in ids:
                pipe.zcount(self._key(uid), f"({now}", "+inf")
            counts = await pipe.execute()
        return {uid for uid, n in zip(ids, counts, strict=True) if int(n) > 0}

    async def touch(self, user_ids: Collection[str], node_id: str) -> None:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return
        now = self._clock.now_ms()
        expires = now + self._ttl_ms
        client = await self._redis()
        async with self._pipeline(client) as pipe:
            for uid in ids:
                key = self._key(uid)
                pipe.zadd(key, {node_id: expires})
                # Entries of dead nodes go when the user's set is next written.
                pipe.zremrangebyscore(key, "-inf", now)
                # Redis forgets the whole set once nobody touched it for two timeouts.
                pipe.pexpire(key, 2 * self._ttl_ms)
            await pipe.execute()
