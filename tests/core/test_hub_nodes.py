"""The hub between nodes: what the Redis fan-out relies on (own sends never echoed back through a gap
fill; a resubscribed broker triggers a resync that fills what was lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from stratochat.adapters.broker.memory import MemoryBroker, MemoryBus
from stratochat.core.events import MessageEvent
from stratochat.core.hub import Hub
from stratochat.web.frames import encode_event
from tests.core.test_hub import FakeConn, History, make_hub, msg


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_own_send_queued_behind_a_gap_is_not_echoed_to_its_socket() -> None:
    """A message sent on this node while a gap before it is being filled reaches the sender's other
    devices, not the sending socket (which gets the ack)."""
    history = History([msg(i) for i in range(1, 4)])
    hub = await make_hub(MemoryBus(), history, "A")
    sender, laptop = FakeConn("1", "u1"), FakeConn("2", "u1")
    await hub.attach(sender)
    await hub.attach(laptop)
    hub.deliver(["u1"], MessageEvent(msg(1)))
    hub.deliver(["u1"], MessageEvent(msg(3)), exclude="1")  # seq 2 lost in transit: a fill starts
    await settle()
    assert laptop.seqs() == [1, 2, 3]
    assert sender.seqs() == [1, 2]
    await hub.close()


class ResubscribingBroker(MemoryBroker):
    """A memory broker whose reconnection the test triggers."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.callbacks: list[Callable[[], Awaitable[None]]] = []

    def on_resubscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        self.callbacks.append(callback)


async def test_resubscribed_broker_resyncs_lost_messages_from_the_store() -> None:
    """Payloads lost while the broker was away are delivered, in order and once, after it resubscribed."""
    history = History([msg(i) for i in range(1, 6)])
    positions = {"c1": 2}

    async def seqs(user_id: str) -> dict[str, int]:
        return dict(positions)

    broker = ResubscribingBroker(MemoryBus())
    hub = Hub(broker, encode_event, "B", history.after, seqs)
    await hub.start()
    conn = FakeConn("1", "u1")
    await hub.attach(conn)  # baseline: seq 2
    positions["c1"] = 5  # 3..5 committed elsewhere, their payloads lost
    for cb in broker.callbacks:
        await cb()
    await settle()
    assert conn.seqs() == [3, 4, 5]
    hub.deliver(["u1"], MessageEvent(msg(5)))  # a late copy is dropped
    assert conn.seqs() == [3, 4, 5]
    await hub.close()
