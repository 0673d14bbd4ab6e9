"""The Broker contract, written against ``stratochat.core.ports.Broker`` only.

``tests/test_broker_contract.py`` runs it once per adapter through the ``brokers`` fixture: a factory
of started brokers that share one backend (one MemoryBus, one Redis, one Redis Cluster) and one
namespace private to the test. Delivery is checked between two broker instances (the MemoryBroker
never hands a broker its own publications). Where a test proves that something did *not* arrive, a
third broker subscribed to the same topic witnesses that the payload was delivered at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Protocol

from stratochat.core.ports import Broker

# How long a "nothing else arrives" check keeps listening after the witness got its payload.
GRACE_S = 0.3


class Recorder:
    """A broker handler that keeps what arrived, in order, and lets a test wait for it."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes) -> None:
        self.got.append((topic, payload))
        self._changed.set()

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p in self.got if t == topic]

    async def wait_for(self, count: int, topic: str | None = None, timeout: float = 10.0) -> None:
        async def reached() -> None:
            while len(self.got if topic is None else self.on(topic)) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reached(), timeout)


class BrokerFactory(Protocol):
    def __call__(self) -> Awaitable[tuple[Broker, Recorder]]: ...


def topic() -> str:
    return f"u:{uuid.uuid4().hex}"


class BrokerContract:
    """Every Broker adapter passes these. Subclasses get ``brokers`` from a parametrized fixture."""

    async def test_a_broker_with_a_peer_is_not_alone(self, brokers: BrokerFactory) -> None:
        """The hub skips publishing only while ``alone``: never once another broker shares the backend."""
        (a, _), (b, _) = await brokers(), await brokers()
        assert a.alone is False and b.alone is False

    async def test_payload_reaches_a_subscribed_broker(self, brokers: BrokerFactory) -> None:
        """A payload published by one broker is delivered, unaltered, to another that subscribed."""
        (a, inbox), (b, _) = await brokers(), await brokers()
        t = topic()
        await a.subscribe(t)
        payload = b'{"f":"\\u00e9t\xc3\xa9","bin":"\x00\xff"}'
        await b.publish([(t, payload)])
        await inbox.wait_for(1)
        assert inbox.got == [(t, payload)]

    async def test_every_subscriber_gets_it(self, brokers: BrokerFactory) -> None:
        """Fan-out: each broker subscribed to the topic receives each payload once."""
        (a, ia), (c, ic), (b, _) = await brokers(), await brokers(), await brokers()
        t = topic()
        await a.subscribe(t)
        await c.subscribe(t)
        await b.publish([(t, b"x"), (t, b"y")])
        await ia.wait_for(2)
        await ic.wait_for(2)
        assert ia.on(t) == ic.on(t) == [b"x", b"y"]

    async def test_only_subscribed_topics_are_delivered(self, brokers: BrokerFactory) -> None:
        """A broker receives nothing for topics it did not subscribe to."""
        (a, ia), (w, iw), (b, _) = await brokers(), await brokers(), await brokers()
        mine, other = topic(), topic()
        await a.subscribe(mine)
        await w.subscribe(other)
        await b.publish([(other, b"not for a"), (mine, b"for a")])
        await iw.wait_for(1)
        await ia.wait_for(1)
        await asyncio.sleep(GRACE_S)
        assert ia.got == [(mine, b"for a")]
        assert iw.got == [(other, b"not for a")]

    async def test_order_is_kept_per_topic(self, brokers: BrokerFactory) -> None:
        """Payloads of one topic from one publisher arrive in publish order, across publish calls."""
        (a, inbox), (b, _) = await brokers(), await brokers()
        t1, t2 = topic(), topic()
        await a.subscribe(t1)
        await a.subscribe(t2)
        sent = [str(i).encode() for i in range(300)]
        for i in range(0, len(sent), 50):
            await b.publish([(t, p) for p in sent[i : i + 50] for t in (t1, t2)])
        await inbox.wait_for(600)
        assert inbox.on(t1) == sent
        assert inbox.on(t2) == sent

    async def test_subscribe_returns_once_delivery_is_on(self, brokers: BrokerFactory) -> None:
        """A payload published right after ``subscribe`` returned is delivered."""
        (a, inbox), (b, _) = await brokers(), await brokers()
        topics = [topic() for _ in range(20)]
        for t in topics:
            await a.subscribe(t)
            await b.publish([(t, t.encode())])
        await inbox.wait_for(20)
        assert sorted(inbox.got) == sorted((t, t.encode()) for t in topics)

    async def test_subscribe_is_idempotent_and_never_duplicates(self, brokers: BrokerFactory) -> None:
        """At most once: subscribing twice still delivers each payload once."""
        (a, inbox), (w, iw), (b, _) = await brokers(), await brokers(), await brokers()
        t = topic()
        await a.subscribe(t)
        await a.subscribe(t)
        await w.subscribe(t)
        sent = [f"m{i}".encode() for i in range(100)]
        await b.publish([(t, p) for p in sent])
        await iw.wait_for(100)
        await inbox.wait_for(100)
        await asyncio.sleep(GRACE_S)
        assert inbox.on(t) == sent
        assert len(inbox.got) == 100

    async def test_unsubscribe_stops_delivery(self, brokers: BrokerFactory) -> None:
        """After ``unsubscribe``, the topic's payloads no longer reach the broker; others still do."""
        (a, ia), (w, iw), (b, _) = await brokers(), await brokers(), await brokers()
        t, kept = topic(), topic()
        await a.subscribe(t)
        await a.subscribe(kept)
        await w.subscribe(t)
        await b.publish([(t, b"before")])
        await ia.wait_for(1)
        await a.unsubscribe(t)
        await a.unsubscribe(topic())  # unsubscribing a topic never subscribed is harmless
        await b.publish([(t, b"after"), (kept, b"still here")])
        await iw.wait_for(2)
        await ia.wait_for(1, topic=kept)
        await asyncio.sleep(GRACE_S)
        assert ia.on(t) == [b"before"]
        assert ia.on(kept) == [b"still here"]

    async def test_resubscribe_after_unsubscribe(self, brokers: BrokerFactory) -> None:
        """A topic unsubscribed and subscribed again is delivered again (a user reconnecting)."""
        (a, inbox), (b, _) = await brokers(), await brokers()
        t = topic()
        await a.subscribe(t)
        await a.unsubscribe(t)
        await a.subscribe(t)
        await b.publish([(t, b"back")])
        await inbox.wait_for(1)
        assert inbox.on(t) == [b"back"]

    async def test_closed_broker_receives_nothing(self, brokers: BrokerFactory) -> None:
        """Once closed, a broker's handler is never called again."""
        (a, ia), (w, iw), (b, _) = await brokers(), await brokers(), await brokers()
        t = topic()
        await a.subscribe(t)
        await w.subscribe(t)
        await a.close()
        await b.publish([(t, b"late")])
        await iw.wait_for(1)
        await asyncio.sleep(GRACE_S)
        assert ia.got == []

    async def test_ping_and_empty_publish(self, brokers: BrokerFactory) -> None:
        """A connected broker answers ping; publishing nothing is a no-op."""
        a, _ = await brokers()
        await a.ping()
        await a.publish([])

    async def test_on_resubscribed_accepts_callbacks(self, brokers: BrokerFactory) -> None:
        """Registering a resubscription callback never calls it while nothing was lost."""
        a, _ = await brokers()
        calls: list[int] = []

        async def cb() -> None:
            calls.append(1)

        a.on_resubscribed(cb)
        b, _ = await brokers()
        t = topic()
        await a.subscribe(t)
        await b.publish([(t, b"x")])
        await asyncio.sleep(GRACE_S)
        assert calls == []
