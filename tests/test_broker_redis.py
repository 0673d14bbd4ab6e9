"""What the Redis broker adds to the contract: routing by user channel (sharded on a cluster), and
recovery when Redis goes away and comes back (fast-failing ping, backoff, restored subscriptions,
then ``on_resubscribed``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stratochat.adapters.broker.redis import RedisBroker
from tests.contracts.broker import Recorder
from tests.services.redis import RedisClusterProcess, RedisServer

MakeRedis = Callable[[str], RedisServer | RedisClusterProcess]


@pytest.fixture
async def closing() -> AsyncIterator[list[RedisBroker]]:
    made: list[RedisBroker] = []
    yield made
    for b in made:
        await b.close()


# One namespace per test run; topics are random per test.
PREFIX = f"t{uuid.uuid4().hex[:8]}:"


async def started(url: str, made: list[RedisBroker], **kw: float) -> tuple[RedisBroker, Recorder]:
    broker = RedisBroker(url, prefix=PREFIX, **kw)  # type: ignore[arg-type]
    inbox = Recorder()
    made.append(broker)
    await broker.start(inbox)
    return broker, inbox


async def eventually(check: Callable[[], object], timeout: float, what: str) -> float:
    """Poll an async or sync check until it passes; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result is not False:
                return time.monotonic() - t0
        except Exception:
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what} within {timeout}s")
        await asyncio.sleep(0.05)


async def fails(coro_fn: Callable[[], object]) -> bool:
    try:
        result = coro_fn()
        if asyncio.iscoroutine(result):
            await result
    except Exception:
        return True
    return False


async def test_single_redis_uses_one_channel_per_user(redis_server: RedisServer, closing: list[RedisBroker]) -> None:
    """On a single Redis a subscription is one classic channel ``<prefix>u:<id>``, dropped on unsubscribe."""
    a, _ = await started(redis_server.url, closing)
    assert not a.sharded
    topic = f"u:{uuid.uuid4().hex}"
    channel = a._channel(topic)
    await a.subscribe(topic)
    r = Redis.from_url(redis_server.url)
    try:
        assert (await r.pubsub_numsub(channel)) == [(channel, 1)]
        await a.unsubscribe(topic)
        await eventually(lambda: _numsub_is(r, channel, 0), 5, "the channel was not unsubscribed")
    finally:
        await r.aclose()


async def _numsub_is(r: Redis, channel: bytes, n: int) -> bool:
    return bool((await r.pubsub_numsub(channel)) == [(channel, n)])


async def test_cluster_uses_sharded_pubsub_on_the_owning_shard(
    redis_cluster: RedisClusterProcess, closing: list[RedisBroker]
) -> None:
    """On a cluster, channels are SSUBSCRIBEd on the primary owning their slot, never classic SUBSCRIBE,
    and payloads cross shards from any node's publisher."""
    a, inbox = await started(redis_cluster.url, closing)
    b, _ = await started(redis_cluster.url, closing)
    assert a.sharded
    topics = [f"u:{uuid.uuid4().hex}" for _ in range(12)]
    for t in topics:
        await a.subscribe(t)
    owners = set()
    for t in topics:
        ch = a._channel(t)
        owner = a._link_name(ch)
        owners.add(owner)
        host, port = owner.rsplit(":", 1)
        node = Redis(host=host, port=int(port))
        try:
            assert await node.execute_command("PUBSUB", "SHARDNUMSUB", ch) == [ch, 1]
            assert await node.execute_command("PUBSUB", "NUMSUB", ch) == [ch, 0]
        finally:
            await node.aclose()
    assert len(owners) > 1  # the channels really are spread over several shards
    await b.publish([(t, t.encode()) for t in topics])
    await inbox.wait_for(len(topics))
    assert sorted(p for _, p in inbox.got) == sorted(t.encode() for t in topics)


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_restart_restores_subscriptions_then_resyncs(
    kind: str, make_redis: MakeRedis, closing: list[RedisBroker]
) -> None:
    """Redis restarts: ping fails fast while it is down, the broker reconnects by itself, restores every
    subscription, runs the on_resubscribed callbacks, and delivery works again."""
    redis = make_redis(kind)
    a, inbox = await started(redis.url, closing)
    b, _ = await started(redis.url, closing)
    resynced = asyncio.Event()

    async def on_resubscribed() -> None:
        resynced.set()

    a.on_resubscribed(on_resubscribed)
    topics = [f"u:{uuid.uuid4().hex}" for _ in range(6)]
    for t in topics:
        await a.subscribe(t)
    await a.ping()

    redis.stop()
    await eventually(lambda: fails(a.ping), 5, "ping did not fail after Redis stopped")
    t0 = time.monotonic()
    assert await fails(a.ping)
    assert time.monotonic() - t0 < 0.5  # fails fast: /readyz must not hang on it
    late = f"u:{uuid.uuid4().hex}"
    await a.subscribe(late)  # while down: returns at once, restored with the others

    redis.start()
    await eventually(a.ping, 30, "the broker did not reconnect")
    await asyncio.wait_for(resynced.wait(), 10)
    await eventually(lambda: b.publish([("u:probe", b"")]), 20, "the publisher did not recover")
    await b.publish([(t, t.encode()) for t in [*topics, late]])
    await inbox.wait_for(len(topics) + 1)
    assert sorted(p for _, p in inbox.got) == sorted(t.encode() for t in [*topics, late])
    assert a.stats["connects"] == 2 and a.stats["disconnects"] == 1


async def test_starts_while_redis_is_down(tmp_path: Path, closing: list[RedisBroker]) -> None:
    """A node whose Redis is not up yet starts unready and connects once Redis appears."""
    redis = RedisServer(tmp_path)
    try:
        a, inbox = await started(redis.url, closing, start_timeout_s=0.2)
        assert a.state == "connecting"
        assert await fails(a.ping)
        topic = f"u:{uuid.uuid4().hex}"
        await a.subscribe(topic)
        redis.start()
        await eventually(a.ping, 30, "the broker did not connect")
        b, _ = await started(redis.url, closing)
        await b.publish([(topic, b"hello")])
        await inbox.wait_for(1)
    finally:
        redis.stop()


async def test_closed_link_is_rebuilt(redis_server: RedisServer, closing: list[RedisBroker]) -> None:
    """A subscriber connection that Redis closes (CLIENT KILL) is rebuilt and then resynced."""
    a, inbox = await started(redis_server.url, closing)
    resynced = asyncio.Event()

    async def on_resubscribed() -> None:
        resynced.set()

    a.on_resubscribed(on_resubscribed)
    topic = f"u:{uuid.uuid4().hex}"
    await a.subscribe(topic)
    r = Redis.from_url(redis_server.url)
    try:
        killed = await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 1
        await asyncio.wait_for(resynced.wait(), 15)
        await r.publish(a._channel(topic), b"after")
        await inbox.wait_for(1)
    finally:
        await r.aclose()


async def test_unanswering_redis_is_noticed_by_keepalive(make_redis: MakeRedis, closing: list[RedisBroker]) -> None:
    """A Redis that stops answering without closing connections (SIGSTOP, like a cut network) turns the
    broker unready within a few keepalive periods; when it answers again the broker resyncs."""
    redis = make_redis("single")
    assert isinstance(redis, RedisServer) and redis.proc is not None
    a, inbox = await started(redis.url, closing, keepalive_s=0.5)
    resynced = asyncio.Event()

    async def on_resubscribed() -> None:
        resynced.set()

    a.on_resubscribed(on_resubscribed)
    topic = f"u:{uuid.uuid4().hex}"
    await a.subscribe(topic)
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: a.state != "up", 10, "the keepalive did not notice")
        assert await fails(a.ping)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await asyncio.wait_for(resynced.wait(), 30)
    await a.ping()
    b, _ = await started(redis.url, closing)
    await b.publish([(topic, b"after")])
    await inbox.wait_for(1)


async def test_close_never_hangs_on_a_task_that_swallows_its_cancel(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On Python 3.11 a cancel that lands as a read's own timeout expires can be lost; a shutdown must
    still end (and say what it left behind)."""
    from stratochat.adapters.broker import redis as redis_broker

    monkeypatch.setattr(redis_broker, "CLOSE_TIMEOUT_S", 0.2)
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    task.cancel()
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="stratochat.broker.redis"):
        await redis_broker._stop_within([task], "task")
    assert time.monotonic() - t0 < 2
    assert "1 task(s) did not stop within 0.2 s" in caplog.text
    stop.set()
    await task
