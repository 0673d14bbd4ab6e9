"""Reproduces two bugs of the hub's gap fill (stratochat/core/hub.py, ``_fill``) that the two-node bench
shows (``own message echoed to its sending socket`` errors, and ``lost`` > 0), without any server:

1. A fill spawned for one gap runs after a lower frame already queued (so it fetches nothing and
   ``missing`` is empty); a second gap among the queued frames is then delivered over, and the skipped
   messages are dropped as duplicates when they arrive over the broker: lost.
2. A fill delivers what it fetched from the store with ``exclude=None``, so the sender's own message,
   committed but not yet handed to the hub, goes to its sending socket as a ``message`` frame.

    python benchmarks/hub_gap_repro.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from stratochat.core.events import Event, MessageEvent
from stratochat.core.hub import Hub
from stratochat.core.models import Message

STORE = {s: Message(f"m{s}", "chat", s, "u6" if s in (1, 3, 4) else "u7", "x", "text", str(s), 0) for s in range(1, 6)}


class Broker:
    alone = False
    handler: Any = None

    def on_resubscribed(self, cb: Any) -> None: ...
    async def start(self, handler: Any) -> None:
        self.handler = handler

    async def subscribe(self, topic: str) -> None: ...
    async def unsubscribe(self, topic: str) -> None: ...
    async def publish(self, batch: Any) -> None: ...


class Conn:
    conn_id, user_id, session_id = "c7", "u7", "s"

    def __init__(self) -> None:
        self.got: list[int] = []

    def send_text(self, frame: str) -> None:
        self.got.append(orjson.loads(frame)["seq"])

    def close(self, code: int, reason: str) -> None: ...


async def fetch_after(chat: str, after: int, limit: int) -> list[Message]:
    return [m for s, m in sorted(STORE.items()) if s > after][:limit]


async def fetch_seqs(user_id: str) -> dict[str, int]:
    return {"chat": 0}


def encode(event: Event) -> str:
    assert isinstance(event, MessageEvent)
    return orjson.dumps({"seq": event.message.seq}).decode()


def from_node0(seq: int) -> bytes:
    """What u6's node publishes on u7's channel for message ``seq``."""
    return orjson.dumps({"n": "n0", "f": orjson.dumps({"seq": seq}).decode(), "c": "chat", "s": seq})


async def node1() -> tuple[Hub, Broker, Conn]:
    broker = Broker()
    hub = Hub(broker, encode, "n1", fetch_after, fetch_seqs)  # type: ignore[arg-type]
    await hub.start()
    conn = Conn()
    await hub.attach(conn)  # type: ignore[arg-type]
    return hub, broker, conn


async def main() -> None:
    hub, broker, conn = await node1()
    hub.deliver(["u6", "u7"], MessageEvent(STORE[2]), exclude="c7")  # own 2 before u6's 1: a gap, a fill
    broker.handler("u:u7", from_node0(1))  # 1 arrives before the fill runs
    hub.deliver(["u6", "u7"], MessageEvent(STORE[5]), exclude="c7")  # own 5; u6's 3 and 4 still on the way
    await asyncio.sleep(0.05)
    broker.handler("u:u7", from_node0(3))
    broker.handler("u:u7", from_node0(4))
    print(f"1. u7's socket got {conn.got}, want [1, 3, 4]; {hub.stats}")
    await hub.close()

    hub, broker, conn = await node1()
    broker.handler("u:u7", from_node0(1))
    broker.handler("u:u7", from_node0(3))  # u6's 3 before u7's own 2 (committed, not yet delivered here)
    await asyncio.sleep(0.05)
    hub.deliver(["u6", "u7"], MessageEvent(STORE[2]), exclude="c7")
    print(f"2. u7's sending socket got {conn.got}, want [1, 3] (its own 2 comes as an ack only)")
    await hub.close()


if __name__ == "__main__":
    asyncio.run(main())
