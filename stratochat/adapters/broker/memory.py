"""In-process broker: the embedded default.

How it differs from the port: brokers attached to one ``MemoryBus`` (by default each gets its own)
exchange payloads synchronously on the event loop, and a broker never receives its own
publications, since on one node the hub has already delivered them locally.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ...core.ports import BrokerHandler


class MemoryBus:
    def __init__(self) -> None:
        self.brokers: list[MemoryBroker] = []


class MemoryBroker:
    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus or MemoryBus()
        self._topics: set[str] = set()
        self._handler: BrokerHandler | None = None

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._bus.brokers.append(self)

    async def close(self) -> None:
        if self in self._bus.brokers:
            self._bus.brokers.remove(self)
        self._handler = None

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        peers = [b for b in self._bus.brokers if b is not self]
        if not peers:
            return
        for topic, payload in messages:
            for peer in peers:
                if topic in peer._topics and peer._handler is not None:
                    peer._handler(topic, payload)

    async def ping(self) -> None:
        return None

    @property
    def alone(self) -> bool:
        return len(self._bus.brokers) <= 1

    def on_resubscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Never called: an in-process bus does not disconnect."""
