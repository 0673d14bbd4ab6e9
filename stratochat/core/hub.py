"""This node's open connections by user, and fan-out to them and to the other nodes.

Delivery is local first (sockets on this node get a frame as soon as the store has committed the
message), then through the Broker to the nodes holding the other recipients. The broker is at most
once, so the hub tracks, per local user and chat, the highest ``seq`` it delivered: an older or equal
one is a duplicate and dropped, a jump ahead is a gap and filled from the store before anything newer
is delivered. Each socket therefore sees a chat's messages exactly once and in order from the moment
it is attached; what came before, the client recovers with ``after=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from .events import Event, MessageEvent
from .models import Message
from .ports import Broker

log = logging.getLogger("stratochat.hub")

FetchAfter = Callable[[str, int, int], Awaitable[list[Message]]]
"""``(chat_id, after_seq, limit)`` -> up to ``limit`` messages with ``seq > after_seq``, oldest first."""
FetchSeqs = Callable[[str], Awaitable[dict[str, int]]]
"""``user_id`` -> ``{chat_id: last_seq}`` for every chat of the user."""

# A gap larger than this is not filled by the hub: the client's own recovery (``after=``) covers it.
MAX_FILL = 1000
# The most broker messages sent in one publish call (one Redis pipeline).
PUBLISH_BATCH = 512
# The most broker messages waiting to be published.
OUTBOX_MAX = 100_000


class Connection(Protocol):
    """One open socket, as the hub sees it. ``send_text`` never blocks: it queues the frame (a
    connection that cannot keep up closes itself)."""

    @property
    def conn_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    def send_text(self, frame: str) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class _UserSlot:
    conns: dict[str, Connection] = field(default_factory=dict)
    # chat_id -> highest seq delivered to this user's sockets here.
    last_seq: dict[str, int] = field(default_factory=dict)
    # chat_id -> (seq, frame, connection not to send it to) that arrived while a gap of that chat was
    # being filled; the excluded connection is the sender's own (it gets the ack instead).
    filling: dict[str, list[tuple[int, str, str | None]]] = field(default_factory=dict)


def user_topic(user_id: str) -> str:
    return f"u:{user_id}"


class Hub:
    def __init__(
        self,
        broker: Broker,
        encode: Callable[[Event], str],
        node_id: str,
        fetch_after: FetchAfter,
        fetch_seqs: FetchSeqs,
    ) -> None:
        self._broker = broker
        self._encode = encode
        self.node_id = node_id
        self._fetch_after = fetch_after
        self._fetch_seqs = fetch_seqs
        self._users: dict[str, _UserSlot] = {}
        self._outbox: list[tuple[str, bytes]] = []
        # message_id -> the local connection sending it, from submit until the hub has delivered it.
        self._sending: dict[str, str] = {}
        self._outbox_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._publisher: asyncio.Task[None] | None = None
        self._closing = False
        # Set when the node shuts down: new sockets are refused while the open ones are drained.
        self.draining = False
        self.on_first_attach: Callable[[str], Awaitable[None]] | None = None
        self.on_last_detach: Callable[[str], Awaitable[None]] | None = None
        self.stats = {
            "broker_in": 0,
            "broker_in_dropped": 0,
            "broker_out_dropped": 0,
            "gaps_filled": 0,
            "duplicates_dropped": 0,
        }

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._broker.on_resubscribed(self._resync)
        await self._broker.start(self._on_broker)
        self._publisher = asyncio.create_task(self._publish_loop(), name="hub-publisher")

    async def close(self) -> None:
        """Flush what is queued for other nodes, then stop. Background fills are cancelled and awaited."""
        self._closing = True
        self._outbox_ready.set()
        if self._publisher is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._publisher, timeout=5)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # connections ---------------------------------------------------------------------------------
    async def attach(self, conn: Connection) -> None:
        """Start delivering to ``conn``. Returns once events committed from now on will reach it."""
        slot = self._users.get(conn.user_id)
        first = slot is None
        if slot is None:
            slot = self._users[conn.user_id] = _UserSlot()
        slot.conns[conn.conn_id] = conn
        if first:
            await self._broker.subscribe(user_topic(conn.user_id))
            # Baseline for gap detection, read after subscribing so nothing falls between the two.
            try:
                seqs = await self._fetch_seqs(conn.user_id)
            except Exception:
                log.exception("could not read chat positions for %s", conn.user_id)
                seqs = {}
            for chat_id, seq in seqs.items():
                if slot.last_seq.get(chat_id, -1) < seq:
                    slot.last_seq[chat_id] = seq
            if self.on_first_attach is not None:
                await self.on_first_attach(conn.user_id)

    async def detach(self, conn: Connection) -> None:
        slot = self._users.get(conn.user_id)
        if slot is None or slot.conns.pop(conn.conn_id, None) is None:
            return
        if slot.conns:
            return
        del self._users[conn.user_id]
        try:
            await self._broker.unsubscribe(user_topic(conn.user_id))
        except Exception:
            log.warning("unsubscribe failed for %s", conn.user_id)
        if self.on_last_detach is not None and not self._closing:
            await self.on_last_detach(conn.user_id)

    def is_local(self, user_id: str) -> bool:
        return user_id in self._users

    def local_user_ids(self) -> list[str]:
        return list(self._users)

    def connections(self) -> Iterator[Connection]:
        for slot in list(self._users.values()):
            yield from list(slot.conns.values())

    def connection_count(self) -> int:
        return sum(len(s.conns) for s in self._users.values())

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections()):
            conn.close(code, reason)

    # fan-out -------------------------------------------------------------------------------------
    def sending(self, message_id: str, conn_id: str) -> None:
        """A local socket is sending this message. Until ``sent``, a gap fill that fetches it from the
        store (a later message overtook it over the broker) leaves that socket out: it gets an ack."""
        self._sending[message_id] = conn_id

    def sent(self, message_id: str) -> None:
        self._sending.pop(message_id, None)

    def deliver(self, user_ids: Iterable[str], event: Event, exclude: str | None = None) -> None:
        """Send ``event`` to every socket of ``user_ids`` (but connection ``exclude``), here and on the
        other nodes. Serialised once, however many sockets receive it. Never blocks."""
        frame = self._encode(event)
        chat_seq = (event.message.chat_id, event.message.seq) if isinstance(event, MessageEvent) else None
        if self._broker.alone:
            # A single node: nobody to publish to, so no envelope and no publisher wake-up per message.
            for uid in user_ids:
                slot = self._users.get(uid)
                if slot is not None:
                    self._deliver_local(uid, slot, frame, chat_seq, exclude)
            return
        envelope: dict[str, object] = {"n": self.node_id, "f": frame}
        if chat_seq is not None:
            envelope["c"], envelope["s"] = chat_seq
        payload = orjson.dumps(envelope)
        for uid in user_ids:
            slot = self._users.get(uid)
            if slot is not None:
                self._deliver_local(uid, slot, frame, chat_seq, exclude)
            self._outbox.append((user_topic(uid), payload))
        if len(self._outbox) > OUTBOX_MAX:
            # The broker is far behind: shed the oldest (at most once; receivers fill from the store).
            shed = len(self._outbox) - OUTBOX_MAX
            del self._outbox[:shed]
            self.stats["broker_out_dropped"] += shed
        self._outbox_ready.set()

    def revoke_session(self, user_id: str, session_id: str) -> None:
        """Close every socket of a session that ended, on every node."""
        self._close_session_local(user_id, session_id)
        if self._broker.alone:
            return
        payload = orjson.dumps({"n": self.node_id, "x": "revoke", "sid": session_id})
        self._outbox.append((user_topic(user_id), payload))
        self._outbox_ready.set()

    def _close_session_local(self, user_id: str, session_id: str) -> None:
        slot = self._users.get(user_id)
        if slot is None:
            return
        for conn in list(slot.conns.values()):
            if conn.session_id == session_id:
                conn.close(4401, "signed out")

    def _deliver_local(
        self,
        user_id: str,
        slot: _UserSlot,
        frame: str,
        chat_seq: tuple[str, int] | None,
        exclude: str | None,
    ) -> None:
        if chat_seq is not None:
            chat_id, seq = chat_seq
            pending = slot.filling.get(chat_id)
            if pending is not None:
                pending.append((seq, frame, exclude))
                return
            last = slot.last_seq.get(chat_id)
            if last is not None and seq <= last:
                self.stats["duplicates_dropped"] += 1
                return
            if last is not None and seq > last + 1:
                slot.filling[chat_id] = [(seq, frame, exclude)]
                self._spawn(self._fill(user_id, chat_id))
                return
            slot.last_seq[chat_id] = seq
        for conn in slot.conns.values():
            if conn.conn_id != exclude:
                conn.send_text(frame)

    async def _fill(self, user_id: str, chat_id: str, upto: int | None = None) -> None:
        """Deliver the messages missing before the first frame queued in ``filling`` (or up to and
        including ``upto``), then the queued frames."""
        slot = self._users.get(user_id)
        if slot is None:
            return
        last = slot.last_seq.get(chat_id, 0)
        pending = slot.filling.get(chat_id, [])
        if upto is not None:
            target = upto + 1
        else:
            target = min(p[0] for p in pending) if pending else last
        missing: list[Message] = []
        cursor = last
        failed = False
        try:
            while cursor < target - 1 and len(missing) < MAX_FILL:
                got = await self._fetch_after(chat_id, cursor, 200)
                if not got:
                    break
                missing.extend(m for m in got if m.seq < target)
                cursor = got[-1].seq
        except Exception:
            log.warning("gap fill failed for chat %s; the client recovers with after=", chat_id)
            failed = True
        slot = self._users.get(user_id)
        if slot is None:
            return
        queued = sorted(slot.filling.pop(chat_id, []), key=lambda p: p[0])
        self.stats["gaps_filled"] += 1
        # A fetched message that also queued up meanwhile (committed here while we fetched) keeps
        # its queued copy, which knows the socket that sent it.
        sending, queued_seqs = self._sending, {p[0] for p in queued}
        missing = [m for m in missing if m.seq not in queued_seqs]
        frames = [(m.seq, self._encode(MessageEvent(m)), sending.get(m.message_id)) for m in missing]
        frames = sorted(frames + queued, key=lambda p: p[0])
        last = slot.last_seq.get(chat_id, 0)
        for i, (seq, frame, exclude) in enumerate(frames):
            if seq <= last:
                continue
            if seq > last + 1 and i > 0 and not failed and len(missing) < MAX_FILL:
                # A new gap among the frames that queued up meanwhile: fill again from there (this
                # fill delivered something first, so the next one starts further on).
                slot.last_seq[chat_id] = last
                slot.filling[chat_id] = frames[i:]
                self._spawn(self._fill(user_id, chat_id))
                return
            last = seq
            for conn in slot.conns.values():
                if conn.conn_id != exclude:
                    conn.send_text(frame)
        slot.last_seq[chat_id] = last

    async def _resync(self) -> None:
        """After the broker reconnected, payloads may be lost: compare every local user's chats with
        the store and fill what is missing."""
        for uid in list(self._users):
            try:
                seqs = await self._fetch_seqs(uid)
            except Exception:
                log.warning("resync failed for %s", uid)
                continue
            slot = self._users.get(uid)
            if slot is None:
                continue
            for chat_id, seq in seqs.items():
                last = slot.last_seq.get(chat_id)
                if last is None:
                    slot.last_seq[chat_id] = seq
                elif seq > last and chat_id not in slot.filling:
                    slot.filling[chat_id] = []
                    self._spawn(self._fill(uid, chat_id, upto=seq))

    # broker --------------------------------------------------------------------------------------
    def _on_broker(self, topic: str, payload: bytes) -> None:
        self.stats["broker_in"] += 1
        try:
            env = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("undecodable broker payload on %s", topic)
            return
        if env.get("n") == self.node_id or not topic.startswith("u:"):
            return
        uid = topic[2:]
        slot = self._users.get(uid)
        if slot is None:
            self.stats["broker_in_dropped"] += 1
            return
        if env.get("x") == "revoke":
            self._close_session_local(uid, str(env.get("sid")))
            return
        frame = env.get("f")
        if not isinstance(frame, str):
            return
        chat_seq = (env["c"], int(env["s"])) if "c" in env and "s" in env else None
        self._deliver_local(uid, slot, frame, chat_seq, None)

    async def _publish_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch = self._outbox[:PUBLISH_BATCH]
                del self._outbox[:PUBLISH_BATCH]
                try:
                    await self._broker.publish(batch)
                except Exception:
                    # At most once by design: receivers fill the gap from the store.
                    log.warning("broker publish failed; %d payloads dropped", len(batch))
            if self._closing:
                return

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
