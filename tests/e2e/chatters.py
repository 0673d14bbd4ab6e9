"""A resilient chat client for multi-node tests: what a real client does when its node goes away.

A ``Chatter`` keeps one socket through the load balancer. One reader task per socket records every
frame; when the socket closes it reconnects (through the balancer, so to any live node), recovers what
it missed with ``GET /api/chats`` and ``after=``, and sends again whatever was not acknowledged, with the
same ``client_msg_id``. Every live ``message`` frame of each socket is kept apart, so a test can check
that each socket saw each chat's messages at most once and in order, and that live plus recovered is
the whole history, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.client import Api, Socket


@dataclass
class SocketLog:
    """Everything one socket received."""

    messages: dict[str, list[int]] = field(default_factory=dict)  # chat_id -> seqs, in arrival order
    frames: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None


class Chatter:
    def __init__(self, api: Api, ws_url: str) -> None:
        self.api = api
        self.ws_url = ws_url
        self.sock: Socket | None = None
        self.logs: list[SocketLog] = []
        # chat_id -> {seq: message_id}: what this client has, live or recovered
        self.have: dict[str, dict[int, str]] = {}
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def user_id(self) -> str:
        return str(self.api.user["user_id"])

    @property
    def log(self) -> SocketLog:
        return self.logs[-1]

    async def connect(self) -> None:
        """Open the first socket; afterwards the chatter reconnects by itself."""
        await self._open()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _open(self, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                self.sock = await self.api.socket(self.ws_url)
                break
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        log = SocketLog()
        self.logs.append(log)
        self._reader = asyncio.create_task(self._read(self.sock, log))
        self._connected.set()

    async def _read(self, sock: Socket, log: SocketLog) -> None:
        try:
            while True:
                frame = await sock.recv(timeout=3600)
                log.frames.append(frame)
                kind = frame.get("type")
                if kind == "message":
                    m = frame["message"]
                    log.messages.setdefault(m["chat_id"], []).append(m["seq"])
                    self.have.setdefault(m["chat_id"], {})[m["seq"]] = m["message_id"]
                elif kind == "ack":
                    m = frame["message"]
                    self.have.setdefault(m["chat_id"], {})[m["seq"]] = m["message_id"]
                    fut = self.acks.get(frame["client_msg_id"])
                    if fut is not None and not fut.done():
                        fut.set_result(m)
        except ConnectionClosed as exc:
            log.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
        except Exception:
            log.close_code = 1006
        finally:
            self._connected.clear()

    async def _supervise(self) -> None:
        while not self._closing:
            assert self._reader is not None
            await asyncio.wait([self._reader])
            if self._closing:
                return
            self.reconnects += 1
            await self._open()
            await self.recover()

    async def recover(self) -> None:
        """Catch up over HTTP, as docs/protocol.md "Delivery guarantee" describes."""
        for _ in range(20):
            try:
                chats = (await self.api.get("/api/chats")).json()["chats"]
                for chat in chats:
                    cid = chat["chat_id"]
                    mine = self.have.setdefault(cid, {})
                    # From the end of what it has without a hole: frames of the new socket may already
                    # have brought newer seqs.
                    top = 0
                    while top + 1 in mine:
                        top += 1
                    if chat["last_seq"] > top:
                        for m in await self.api.all_messages(cid, after=top):
                            mine[m["seq"]] = m["message_id"]
                return
            except Exception:  # the balancer may still try the dead node first
                await asyncio.sleep(0.2)
        raise AssertionError("could not recover over HTTP")

    async def send(self, chat_id: str, content: str, timeout: float = 60.0) -> dict[str, Any]:
        """Send until acknowledged, across reconnects, always with the same client_msg_id."""
        cmid = uuid.uuid4().hex
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[cmid] = fut
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                await asyncio.wait_for(self._connected.wait(), max(0.1, deadline - asyncio.get_running_loop().time()))
                sock = self.sock
                assert sock is not None
                with contextlib.suppress(ConnectionClosed):
                    await sock.send({"type": "send", "chat_id": chat_id, "content": content, "client_msg_id": cmid})
                # Wait for the ack, or for the socket to go (then send again on the next one). Retry after
                # a while on the same socket too: a dying node may never answer.
                reader = self._reader
                assert reader is not None
                await asyncio.wait([fut, reader], timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
                if fut.done():
                    return fut.result()
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"no ack for {cmid}")
        finally:
            self.acks.pop(cmid, None)

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.sock is not None:
            with contextlib.suppress(Exception):
                await self.sock.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


def assert_exactly_once(chatter: Chatter, history: dict[str, list[dict[str, Any]]]) -> None:
    """Each socket saw each chat's messages at most once and in increasing seq order, and the client
    ends with exactly the stored history."""
    for log in chatter.logs:
        for cid, seqs in log.messages.items():
            assert seqs == sorted(set(seqs)), f"socket saw {cid} out of order or twice: {seqs}"
    for cid, msgs in history.items():
        want = {m["seq"]: m["message_id"] for m in msgs}
        have = chatter.have.get(cid, {})
        missing = sorted(set(want) - set(have))
        wrong = sorted(s for s in have if want.get(s) != have[s])
        assert not missing and not wrong, f"{chatter.api.username} in {cid}: missing {missing}, wrong {wrong}"


def assert_live_complete(chatter: Chatter, history: dict[str, list[dict[str, Any]]], after: dict[str, int]) -> None:
    """A client that never lost its socket got every other member's message after ``after[chat]`` live,
    once, in order. (Its own sends come back as acks; a gap fill may also hand the sender a copy of its
    own message, which ``assert_exactly_once`` still requires to be unique and in order.)"""
    assert len(chatter.logs) == 1, f"{chatter.api.username} reconnected"
    log = chatter.log
    for cid, msgs in history.items():
        own = {m["seq"] for m in msgs if m["sender_id"] == chatter.user_id}
        theirs = [m["seq"] for m in msgs if m["seq"] > after.get(cid, 0) and m["seq"] not in own]
        got = [seq for seq in log.messages.get(cid, []) if seq not in own]
        assert got == theirs, f"{chatter.api.username} missed or repeated live messages in {cid}: {got} != {theirs}"
