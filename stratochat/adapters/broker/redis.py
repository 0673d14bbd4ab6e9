"""Redis fan-out between nodes, on a single Redis or a Redis Cluster (redis-py asyncio).

How it differs from the port:

- Topics map to channels ``<prefix><topic>``. Each node subscribes only to the channels of the users it
  holds (``u:<user_id>``), so a node receives only what its users need. On a single Redis that is
  classic ``SUBSCRIBE``/``PUBLISH``; on a Redis Cluster (detected with ``INFO cluster``) it is sharded
  pub/sub, ``SSUBSCRIBE``/``SPUBLISH``: a payload travels only inside the shard that owns its channel,
  where classic ``PUBLISH`` would be broadcast to every node of the cluster.
- Subscriptions live on dedicated connections ("links"; one, or one per primary of a cluster), read by
  one task each and checked with ``PING`` when idle. redis-py's own reconnect-and-resubscribe is turned
  off on those links, because a silent resubscription would hide the window in which payloads were
  lost. Instead, when any link fails (error, missed PING, a shard that unsubscribes us after a slot
  moved), every link is dropped, the broker reconnects with capped exponential backoff and jitter,
  restores every subscription, and only then runs the ``on_resubscribed`` callbacks (the hub compares
  its users' chats with the store and fills what was lost).
- ``ping`` fails at once while the links are down, so ``/readyz`` turns red without waiting for a
  network timeout, and green again as soon as the subscriptions are back.
- A node receives its own publications on the topics it subscribes to (the hub drops its echoes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

from ...core.ports import BrokerHandler

if TYPE_CHECKING:  # the cluster client costs half a second to import: only in cluster mode
    from redis.asyncio.cluster import RedisCluster

log = logging.getLogger("stratochat.broker.redis")

RedisClient: TypeAlias = "Redis | RedisCluster"

DEFAULT_PREFIX = "stratochat:"
# Seconds. Connect and command timeouts are short: a chat node would rather drop a payload (the hub
# recovers it from the store) than stall its publisher, and /readyz must notice an outage quickly.
CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 1.0
# An idle link sends PING after this long and gives up when the answer takes as long again, so a
# silently cut connection is noticed within about twice this.
KEEPALIVE_S = 5.0
# Reconnect backoff: 0.1 s doubling up to 5 s (with jitter), so a node is back within seconds of
# Redis returning (the readiness contract allows 30 s).
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
# How long close() waits for the broker's tasks to end after cancelling them.
CLOSE_TIMEOUT_S = 5.0
# At most this many (S)SUBSCRIBE commands are written at once while restoring subscriptions.
SUBSCRIBE_CHUNK = 256


class BrokerUnavailable(ConnectionError):
    """Redis cannot be reached right now (the broker is reconnecting)."""


def _client_options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": COMMAND_TIMEOUT_S,
        # One quick retry covers a pooled connection that went stale while Redis restarted.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    }


async def is_cluster(url: str) -> bool:
    """Whether the server behind ``url`` runs in cluster mode."""
    probe = Redis.from_url(url, **_client_options())
    try:
        info = await probe.info("cluster")
        return bool(int(info.get("cluster_enabled", 0)))
    finally:
        await probe.aclose()


async def open_client(url: str, cluster: bool | None = None) -> RedisClient:
    """A command client for ``url``: a ``RedisCluster`` when the server runs in cluster mode, else a
    ``Redis``. Raises when Redis cannot be reached."""
    if cluster is None:
        cluster = await is_cluster(url)
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        rc = RedisCluster.from_url(url, **_client_options())
        try:
            await rc.initialize()
        except BaseException:
            await rc.aclose()
            raise
        return rc
    return Redis.from_url(url, **_client_options())


async def _stop_within(tasks: list[asyncio.Task[None]], what: str) -> None:
    """Wait for cancelled tasks, but never hang a shutdown on one that does not end."""
    done, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
    for t in done:
        if not t.cancelled():
            t.exception()  # retrieved: an error on the way out is not news
    if stuck:
        log.warning("Redis broker: %d %s(s) did not stop within %s s", len(stuck), what, CLOSE_TIMEOUT_S)


@dataclass(eq=False)
class _Link:
    """One subscriber connection and the channels subscribed on it."""

    name: str
    conn: AbstractConnection
    channels: set[bytes] = field(default_factory=set)
    # channel -> futures waiting for its (s)subscribe confirmation
    waiting: dict[bytes, list[asyncio.Future[None]]] = field(default_factory=dict)
    # channel -> unsubscribe confirmations still due (so an unsolicited one can be told apart)
    unsub_due: dict[bytes, int] = field(default_factory=dict)
    # Commands go out through one writer task per link, so they reach Redis in the order queued.
    outbox: asyncio.Queue[list[bytes]] = field(default_factory=asyncio.Queue)
    reader: asyncio.Task[None] | None = None
    writer: asyncio.Task[None] | None = None
    # Set before the link's tasks are cancelled. On Python 3.11 a cancel that lands as the read's own
    # timeout expires can be swallowed (the read just times out), and the reader loops on: it checks this.
    dropped: bool = False


class RedisBroker:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool | None = None,
        start_timeout_s: float = 5.0,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._url = url
        self._prefix = prefix.encode()
        self._cluster_mode = cluster
        self._start_timeout_s = start_timeout_s
        self._keepalive_s = keepalive_s
        self._handler: BrokerHandler | None = None
        self._client: RedisClient | None = None
        self._topics: set[str] = set()
        self._links: dict[str, _Link] = {}
        self._state = "new"  # new -> connecting <-> up -> closed
        self._up = asyncio.Event()
        self._failed = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"connects": 0, "disconnects": 0, "published": 0, "received": 0, "publish_errors": 0}

    @property
    def state(self) -> str:
        return self._state

    @property
    def sharded(self) -> bool:
        """True on a Redis Cluster (sharded pub/sub)."""
        return self._client is not None and not isinstance(self._client, Redis)

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self, handler: BrokerHandler) -> None:
        """Begin connecting. Waits up to ``start_timeout_s`` for the first connection; if Redis is not
        there yet the node starts anyway (not ready) and keeps trying in the background."""
        if self._state != "new":
            raise RuntimeError(f"RedisBroker cannot start from state {self._state}")
        self._handler = handler
        self._state = "connecting"
        self._supervisor = asyncio.create_task(self._supervise(), name="redis-broker")
        try:
            await asyncio.wait_for(self._up.wait(), self._start_timeout_s)
        except TimeoutError:
            log.warning("Redis is not reachable yet; the node starts unready and keeps trying")

    async def close(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self._up.clear()
        tasks = [t for t in (self._supervisor, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await _stop_within(tasks, "task")
        await self._drop_links()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    def on_resubscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._callbacks.append(callback)

    # subscriptions -------------------------------------------------------------------------------
    async def subscribe(self, topic: str) -> None:
        """Idempotent. While connected, returns once Redis confirmed the subscription. While
        reconnecting, returns at once: the subscription is restored with the others, before the
        ``on_resubscribed`` callbacks run."""
        self._check_open()
        channel = self._channel(topic)
        if topic in self._topics:
            link = self._links.get(self._link_name(channel)) if self._state == "up" else None
            pending = link.waiting.get(channel) if link is not None else None
            if pending:
                await self._await_confirmation(pending[0])
            return
        self._topics.add(topic)
        if self._state != "up":
            return
        link = self._links.get(self._link_name(channel))
        if link is None:
            self._fail("no link owns the channel (topology changed)")
            return
        fut = self._send_subscribe(link, [channel])[0]
        await self._await_confirmation(fut)

    async def unsubscribe(self, topic: str) -> None:
        self._check_open()
        if topic not in self._topics:
            return
        self._topics.discard(topic)
        if self._state != "up":
            return
        channel = self._channel(topic)
        link = self._links.get(self._link_name(channel))
        if link is None or channel not in link.channels:
            return
        self._send_unsubscribe(link, [channel])

    # publishing ----------------------------------------------------------------------------------
    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One pipeline per call (on a cluster, one per shard, in parallel); payloads of one topic keep
        their order. Tried even while the subscriber links reconnect: publishing has its own
        connections and may well work; if it fails, this raises and the hub drops the batch."""
        self._check_open()
        if not messages:
            return
        client = self._client
        if client is None:
            raise BrokerUnavailable("not connected to Redis yet")
        pipe: Any = client.pipeline(transaction=False) if isinstance(client, Redis) else client.pipeline()
        send = pipe.publish if isinstance(client, Redis) else pipe.spublish
        try:
            async with pipe:
                for topic, payload in messages:
                    send(self._channel(topic), payload)
                await pipe.execute()
        except Exception as exc:  # RedisError, OSError, and RedisClusterException (not a RedisError)
            self.stats["publish_errors"] += 1
            raise BrokerUnavailable(f"publish failed: {type(exc).__name__}") from exc
        self.stats["published"] += len(messages)

    @property
    def alone(self) -> bool:
        return False  # other nodes may hold any user

    async def ping(self) -> None:
        """Fails at once while the subscriber links are down; otherwise a PING within 1 s."""
        self._check_open()
        if self._state != "up" or self._client is None:
            raise BrokerUnavailable("Redis subscriptions are down; reconnecting")
        try:
            await asyncio.wait_for(self._client.ping(), PING_TIMEOUT_S)
        except Exception as exc:  # also RedisClusterException, which is not a RedisError
            raise BrokerUnavailable(f"Redis did not answer PING: {type(exc).__name__}") from exc

    # internals -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._state in ("new", "closed"):
            raise RuntimeError(f"RedisBroker is {self._state}")

    def _channel(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    def _link_name(self, channel: bytes) -> str:
        client = self._client
        if client is not None and not isinstance(client, Redis):  # a RedisCluster
            try:
                node = client.get_node_from_key(channel)  # type: ignore[arg-type]
            except RedisError:  # slot not covered (mid-failover)
                return ""
            return node.name if node is not None else ""
        return "single"

    def _fail(self, why: str) -> None:
        if self._state == "up" and not self._failed.is_set():
            log.warning("Redis broker link lost: %s", why)
        self._failed.set()

    async def _supervise(self) -> None:
        attempt = 0
        connected_before = False
        while self._state != "closed":
            self._failed.clear()
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._drop_links()
                attempt += 1
                delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("cannot reach Redis (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.stats["connects"] += 1
            if connected_before:
                log.info("Redis broker reconnected; %d subscriptions restored", len(self._topics))
                for cb in self._callbacks:
                    self._spawn(self._run_callback(cb))
            connected_before = True
            await self._failed.wait()
            self.stats["disconnects"] += 1
            self._state = "connecting"
            self._up.clear()
            await self._drop_links()

    async def _connect(self) -> None:
        if self._client is None:
            self._client = await open_client(self._url, self._cluster_mode)
        client = self._client
        if not isinstance(client, Redis):  # a RedisCluster
            # Refresh the slot map: after a failover or resharding, channels have new owners.
            await client.nodes_manager.initialize()
            targets: list[tuple[str, str | None, int | None]] = [
                (n.name, n.host, int(n.port)) for n in client.get_primaries()
            ]
        else:
            targets = [("single", None, None)]
        links: dict[str, _Link] = {}
        self._links = links
        for name, host, port in targets:
            conn = self._new_connection(host, port)
            links[name] = _Link(name, conn)
            await conn.connect()  # type: ignore[no-untyped-call]
        for link in links.values():
            link.reader = asyncio.create_task(self._read(link), name=f"redis-read-{link.name}")
            link.writer = asyncio.create_task(self._write(link), name=f"redis-write-{link.name}")
        # Restore every wanted subscription; topics added or removed meanwhile are caught by the loop.
        while True:
            want = {self._channel(t) for t in self._topics}
            have = {c for link in links.values() for c in link.channels}
            add, remove = want - have, have - want
            if not add and not remove:
                break
            futures: list[asyncio.Future[None]] = []
            for link, channels in self._by_link(add).items():
                futures += self._send_subscribe(link, channels)
            for link, channels in self._by_link(remove).items():
                self._send_unsubscribe(link, channels)
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), COMMAND_TIMEOUT_S + len(futures) / 1000)
            if self._failed.is_set():
                raise BrokerUnavailable("a link failed while subscribing")
        # No await since the last check: every subscribe() from here on sees "up" and sends itself.
        self._state = "up"
        self._up.set()

    def _new_connection(self, host: str | None, port: int | None) -> AbstractConnection:
        opts: dict[str, Any] = dict(parse_url(self._url))
        cls = opts.pop("connection_class", Connection)
        if host is not None:
            opts.update(host=host, port=port)
            opts.pop("db", None)  # a cluster has database 0 only
        # RESP2 keeps pub/sub replies plain arrays; no retries: a failed link is rebuilt by _supervise.
        opts.update(
            protocol=2,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        conn: AbstractConnection = cls(**opts)
        return conn

    def _by_link(self, channels: Iterable[bytes]) -> dict[_Link, list[bytes]]:
        out: dict[_Link, list[bytes]] = {}
        for ch in channels:
            link = self._links.get(self._link_name(ch))
            if link is None:
                raise BrokerUnavailable("no link owns a channel (topology changed)")
            out.setdefault(link, []).append(ch)
        return out

    def _send_subscribe(self, link: _Link, channels: list[bytes]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        futures = []
        for ch in channels:
            fut: asyncio.Future[None] = loop.create_future()
            link.waiting.setdefault(ch, []).append(fut)
            link.channels.add(ch)
            futures.append(fut)
        # Sharded: one SSUBSCRIBE per channel, since a cluster refuses channels of several slots in one.
        cmd = "SSUBSCRIBE" if self.sharded else "SUBSCRIBE"
        self._send(link, [(cmd, ch) for ch in channels])
        return futures

    def _send_unsubscribe(self, link: _Link, channels: list[bytes]) -> None:
        for ch in channels:
            link.channels.discard(ch)
            link.unsub_due[ch] = link.unsub_due.get(ch, 0) + 1
        cmd = "SUNSUBSCRIBE" if self.sharded else "UNSUBSCRIBE"
        self._send(link, [(cmd, ch) for ch in channels])

    def _send(self, link: _Link, commands: list[tuple[str, bytes]]) -> None:
        """Queue commands on a link without waiting (replies arrive through its reader)."""
        for i in range(0, len(commands), SUBSCRIBE_CHUNK):
            link.outbox.put_nowait(link.conn.pack_commands(commands[i : i + SUBSCRIBE_CHUNK]))

    async def _write(self, link: _Link) -> None:
        conn = link.conn
        try:
            while True:
                packed = await link.outbox.get()
                if not conn.is_connected:
                    # redis-py would reconnect silently, without our subscriptions: rebuild instead.
                    raise BrokerUnavailable("not connected")
                await conn.send_packed_command(packed, check_health=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"write on link {link.name} failed: {type(exc).__name__}")

    async def _await_confirmation(self, fut: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(fut), COMMAND_TIMEOUT_S)
        except TimeoutError:
            # The link is probably dead; the rebuild restores this subscription and resyncs.
            self._fail("a subscription was not confirmed in time")
        except Exception:
            pass

    async def _read(self, link: _Link) -> None:
        conn = link.conn
        loop = asyncio.get_running_loop()
        ping_sent: float | None = None
        try:
            while not link.dropped:
                resp = await conn.read_response(timeout=self._keepalive_s, disconnect_on_error=True)
                now = loop.time()
                if resp is None:  # idle
                    if ping_sent is not None and now - ping_sent >= self._keepalive_s:
                        raise BrokerUnavailable("no answer to PING")
                    if ping_sent is None:
                        ping_sent = now
                        self._send(link, [("PING", b"")])
                    continue
                ping_sent = None
                self._on_reply(link, resp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(f"link {link.name}: {type(exc).__name__}: {exc}")
        finally:
            for futures in link.waiting.values():
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(BrokerUnavailable("link lost"))
            link.waiting.clear()

    def _on_reply(self, link: _Link, resp: Any) -> None:
        if not isinstance(resp, list) or len(resp) < 2:
            return  # +PONG on a link without subscriptions
        kind = bytes(resp[0]).lower()
        channel = bytes(resp[1])
        if kind in (b"message", b"smessage") and len(resp) >= 3:
            self.stats["received"] += 1
            topic = channel[len(self._prefix) :].decode(errors="replace")
            # Unsubscribing takes effect at once: what is still in flight on the link is dropped here.
            if self._handler is not None and channel.startswith(self._prefix) and topic in self._topics:
                try:
                    self._handler(topic, bytes(resp[2]))
                except Exception:
                    log.exception("broker handler failed for %s", topic)
        elif kind in (b"subscribe", b"ssubscribe"):
            futures = link.waiting.pop(channel, [])
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        elif kind in (b"unsubscribe", b"sunsubscribe"):
            due = link.unsub_due.get(channel, 0)
            if due > 0:
                if due == 1:
                    del link.unsub_due[channel]
                else:
                    link.unsub_due[channel] = due - 1
            elif channel in link.channels:
                # Not asked for: the shard gave the slot away (resharding, failover). Rebuild on the
                # current topology and resync.
                link.channels.discard(channel)
                self._fail(f"Redis unsubscribed {channel!r} (slot moved)")

    async def _drop_links(self) -> None:
        links, self._links = self._links, {}
        readers = [t for link in links.values() for t in (link.reader, link.writer) if t is not None]
        for link in links.values():
            link.dropped = True
        for r in readers:
            r.cancel()
        if readers:
            await _stop_within(readers, "link task")
        for link in links.values():
            with contextlib.suppress(Exception):
                await link.conn.disconnect(nowait=True)

    async def _run_callback(self, cb: Callable[[], Awaitable[None]]) -> None:
        try:
            await cb()
        except Exception:
            log.exception("on_resubscribed callback failed")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
