"""The hub: local-first fan-out, echo suppression, duplicate drop and gap filling."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from stratochat.adapters.broker.memory import MemoryBroker, MemoryBus
from stratochat.core.events import MessageEvent, TypingEvent
from stratochat.core.hub import Hub
from stratochat.core.models import Message
from stratochat.web.frames import encode_event


class FakeConn:
    def __init__(self, conn_id: str, user_id: str, session_id: str = "s") -> None:
        self.conn_id, self.user_id, self.session_id = conn_id, user_id, session_id
        self.frames: list[dict] = []  # type: ignore[type-arg]
        self.closed: tuple[int, str] | None = None

    def send_text(self, frame: str) -> None:
        self.frames.append(orjson.loads(frame))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def seqs(self) -> list[int]:
        return [f["message"]["seq"] for f in self.frames if f["type"] == "message"]


def msg(seq: int, chat: str = "c1") -> Message:
    return Message(f"m{seq}", chat, seq, "u0", "zed", "text", f"#{seq}", 1_780_000_000_000)


class History:
    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = list(messages)
        self.fetches = 0

    async def after(self, chat_id: str, after: int, limit: int) -> list[Message]:
        self.fetches += 1
        return [m for m in self.messages if m.chat_id == chat_id and m.seq > after][:limit]

    async def seqs(self, user_id: str) -> dict[str, int]:
        return {}


async def make_hub(bus: MemoryBus, history: History, node: str) -> Hub:
    hub = Hub(MemoryBroker(bus), encode_event, node, history.after, history.seqs)
    await hub.start()
    return hub


async def test_local_delivery_excludes_origin_and_reaches_other_node() -> None:
    bus, history = MemoryBus(), History([])
    a, b = await make_hub(bus, history, "A"), await make_hub(bus, history, "B")
    sender, other_device = FakeConn("1", "u1"), FakeConn("2", "u1")
    remote = FakeConn("3", "u2")
    await a.attach(sender)
    await a.attach(other_device)
    await b.attach(remote)
    a.deliver(["u1", "u2"], MessageEvent(msg(1)), exclude="1")
    a.deliver(["u1", "u2"], TypingEvent("c1", "u1"))
    await a.close()  # flushes the publish queue
    assert sender.seqs() == [] and other_device.seqs() == [1]
    assert remote.seqs() == [1]
    assert [f["type"] for f in remote.frames] == ["message", "typing"]
    await b.close()


async def test_duplicates_dropped_and_gaps_filled_from_store() -> None:
    """A repeated seq is dropped; a jump fetches the missing ones first, so the socket sees 1..5 once."""
    history = History([msg(i) for i in range(1, 6)])
    hub = await make_hub(MemoryBus(), history, "A")
    conn = FakeConn("1", "u1")
    await hub.attach(conn)

    def arrive(m: Message) -> None:
        env = {"n": "B", "f": encode_event(MessageEvent(m)), "c": m.chat_id, "s": m.seq}
        hub._on_broker("u:u1", orjson.dumps(env))

    arrive(msg(1))
    arrive(msg(1))
    arrive(msg(4))  # 2 and 3 were lost on the way
    arrive(msg(5))  # arrives while the gap is being filled
    for _ in range(20):
        if conn.seqs() == [1, 2, 3, 4, 5]:
            break
        await asyncio.sleep(0.01)
    assert conn.seqs() == [1, 2, 3, 4, 5]
    assert history.fetches >= 1 and hub.stats["duplicates_dropped"] == 1
    arrive(msg(3))
    assert conn.seqs() == [1, 2, 3, 4, 5]
    await hub.close()


async def test_own_echo_and_unheld_users_ignored() -> None:
    hub = await make_hub(MemoryBus(), History([]), "A")
    conn = FakeConn("1", "u1")
    await hub.attach(conn)
    echo = {"n": "A", "f": encode_event(MessageEvent(msg(1))), "c": "c1", "s": 1}
    hub._on_broker("u:u1", orjson.dumps(echo))
    hub._on_broker("u:u9", orjson.dumps({**echo, "n": "B"}))
    assert conn.frames == [] and hub.stats["broker_in_dropped"] == 1
    await hub.close()


async def test_revoke_closes_only_that_session() -> None:
    bus, history = MemoryBus(), History([])
    a, b = await make_hub(bus, history, "A"), await make_hub(bus, history, "B")
    here, there, other = FakeConn("1", "u1", "s1"), FakeConn("2", "u1", "s1"), FakeConn("3", "u1", "s2")
    await a.attach(here)
    await b.attach(there)
    await b.attach(other)
    a.revoke_session("u1", "s1")
    await a.close()
    assert here.closed and there.closed and here.closed[0] == 4401
    assert other.closed is None
    await b.close()


async def test_a_lone_node_publishes_nothing() -> None:
    """With no peer on the broker, delivery is local only: nothing is queued for other nodes."""
    hub = await make_hub(MemoryBus(), History([]), "A")
    conn = FakeConn("1", "u1")
    await hub.attach(conn)
    hub.deliver(["u1", "u2"], MessageEvent(msg(1)))
    assert conn.seqs() == [1] and hub._outbox == []
    await hub.close()


class Started(History):
    """A store where the user's chat exists (attach starts it at seq 0, so a jump is a gap)."""

    async def seqs(self, user_id: str) -> dict[str, int]:
        return {"c1": 0}


def mixed(seq: int, own: set[int]) -> Message:
    sender = "u1" if seq in own else "u0"
    return Message(f"m{seq}", "c1", seq, sender, sender, "text", f"#{seq}", 1_780_000_000_000)


def from_node_b(hub: Hub, seq: int, own: set[int]) -> None:
    """Message ``seq`` of chat c1 arriving over the broker from node B, on user u1's channel."""
    m = mixed(seq, own)
    hub._on_broker("u:u1", orjson.dumps({"n": "B", "f": encode_event(MessageEvent(m)), "c": "c1", "s": seq}))


async def until(check: object, tries: int = 50) -> None:
    for _ in range(tries):
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)


async def test_a_second_gap_among_queued_frames_is_filled_not_skipped() -> None:
    """A fill that finds its gap already closed by a queued frame still fills a later gap among the
    queued frames; the messages it skipped would otherwise be dropped as duplicates (lost)."""
    own = {2, 5}
    history = Started([mixed(i, own) for i in range(1, 6)])
    hub = await make_hub(MemoryBus(), history, "A")
    sender, other_device = FakeConn("c7", "u1"), FakeConn("c8", "u1")
    await hub.attach(sender)
    await hub.attach(other_device)

    hub.deliver(["u1"], MessageEvent(mixed(2, own)), exclude="c7")  # own 2 before u0's 1: a gap
    from_node_b(hub, 1, own)  # closes that gap before the fill runs
    hub.deliver(["u1"], MessageEvent(mixed(5, own)), exclude="c7")  # 3 and 4 still on the way
    await until(lambda: other_device.seqs() == [1, 2, 3, 4, 5])
    from_node_b(hub, 3, own)
    from_node_b(hub, 4, own)
    assert other_device.seqs() == [1, 2, 3, 4, 5]
    assert sender.seqs() == [1, 3, 4]
    await hub.close()


async def test_a_fill_does_not_echo_a_message_to_the_socket_sending_it() -> None:
    """A fill fetching the sender's own message (committed, not yet delivered here) leaves the sending
    socket out (it gets the ack) but gives it to the sender's other sockets."""
    own = {2}
    history = Started([mixed(i, own) for i in range(1, 4)])
    hub = await make_hub(MemoryBus(), history, "A")
    sender, other_device = FakeConn("c7", "u1"), FakeConn("c8", "u1")
    await hub.attach(sender)
    await hub.attach(other_device)
    hub.sending("m2", "c7")

    from_node_b(hub, 1, own)
    from_node_b(hub, 3, own)  # overtakes the sender's own 2: the fill fetches 2 from the store
    await until(lambda: other_device.seqs() == [1, 2, 3])
    hub.deliver(["u1"], MessageEvent(mixed(2, own)), exclude="c7")
    hub.sent("m2")
    assert other_device.seqs() == [1, 2, 3]
    assert sender.seqs() == [1, 3]
    await hub.close()


async def test_a_message_committed_while_a_fill_fetches_it_is_not_echoed() -> None:
    """The sender's own message, fetched by a fill while it commits and queues here (its send is
    over by the time the fill delivers), still does not reach the sending socket."""
    own = {2}
    hub: Hub | None = None

    class CommitsDuringFetch(Started):
        async def after(self, chat_id: str, after: int, limit: int) -> list[Message]:
            got = await super().after(chat_id, after, limit)
            assert hub is not None
            hub.deliver(["u1"], MessageEvent(mixed(2, own)), exclude="c7")
            hub.sent("m2")
            return got

    history = CommitsDuringFetch([mixed(i, own) for i in range(1, 4)])
    hub = await make_hub(MemoryBus(), history, "A")
    sender, other_device = FakeConn("c7", "u1"), FakeConn("c8", "u1")
    await hub.attach(sender)
    await hub.attach(other_device)
    hub.sending("m2", "c7")
    from_node_b(hub, 1, own)
    from_node_b(hub, 3, own)
    await until(lambda: other_device.seqs() == [1, 2, 3])
    assert other_device.seqs() == [1, 2, 3]
    assert sender.seqs() == [1, 3]
    await hub.close()
