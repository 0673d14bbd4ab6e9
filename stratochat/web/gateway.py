"""``/ws``: the handshake (session and Origin), the frame loop, and a bounded outbound queue per socket.

Each socket has one writer task draining its queue, so fan-out never waits on a slow client; a client
whose queue overflows is closed (1013) instead of growing memory. Sends are pipelined: the reader
submits each ``send`` frame in order and goes on reading while the store commits, up to
``MAX_IN_FLIGHT`` per socket (beyond that it stops reading, which pushes back on the client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse

from ..core.errors import StratochatError, Unauthorized
from ..core.models import Session, User
from ..core.services import Services
from .deps import get_origins, get_services, token_of
from .frames import ack_frame, dumps, error_frame, error_frame_for, user_json

log = logging.getLogger("stratochat.gateway")
router = APIRouter()

MAX_IN_FLIGHT = 64
# Frames other than sends a socket may send: a steady rate and a burst (sends meet the per-user limits).
FRAME_RATE, FRAME_BURST = 100.0, 200.0
CLOSE_SESSION_ENDED = 4401
CLOSE_TOO_SLOW = 1013


class SocketConnection:
    """One accepted socket: what the hub delivers to (``send_text``, ``close``)."""

    __slots__ = (
        "_closing",
        "_out",
        "_wake",
        "_ws",
        "conn_id",
        "in_flight",
        "max_queue",
        "session",
        "tokens",
        "tokens_at",
        "user",
        "writer",
    )

    def __init__(self, ws: WebSocket, user: User, session: Session, max_queue: int) -> None:
        self.conn_id = uuid.uuid4().hex
        self.user = user
        self.session = session
        self._ws = ws
        self._out: deque[str] = deque()
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self.max_queue = max_queue
        self.in_flight: set[asyncio.Task[None]] = set()
        self.writer: asyncio.Task[None] | None = None
        self.tokens = FRAME_BURST
        self.tokens_at = time.monotonic()

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def send_text(self, frame: str) -> None:
        if self._closing is not None:
            return
        if len(self._out) >= self.max_queue:
            log.warning("closing a socket that cannot keep up", extra={"user_id": self.user_id})
            self._out.clear()
            self.close(CLOSE_TOO_SLOW, "too slow to keep up")
            return
        self._out.append(frame)
        self._wake.set()

    def send_first(self, frame: str) -> None:
        """Queue ``frame`` ahead of everything already queued (the ready frame)."""
        self._out.appendleft(frame)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            self._wake.set()

    def allow_frame(self) -> bool:
        now = time.monotonic()
        self.tokens = min(FRAME_BURST, self.tokens + (now - self.tokens_at) * FRAME_RATE)
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def run_writer(self) -> None:
        ws = self._ws
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._out:
                    await ws.send({"type": "websocket.send", "text": self._out.popleft()})
                if self._closing is not None:
                    code, reason = self._closing
                    with contextlib.suppress(Exception):
                        await ws.close(code, reason)
                    return
        except Exception:
            # The peer went away; the reader loop sees the disconnect and cleans up.
            self._closing = self._closing or (1006, "gone")


@router.websocket("/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    services = get_services(ws)
    if services.hub.draining:  # shutting down: the balancer retries another node
        await _refuse(ws, 503, "unavailable", "the node is shutting down; connect again")
        return
    origin = ws.headers.get("origin")
    if origin is not None and not get_origins(ws).allowed(origin, ws.headers.get("host")):
        await _refuse(ws, 403, "forbidden", "origin not allowed")
        return
    token, _ = token_of(ws)
    try:
        user, session = await services.accounts.authenticate(token)
    except Unauthorized as exc:
        await _refuse(ws, 401, "unauthorized", exc.detail)
        return
    except StratochatError as exc:
        await _refuse(ws, 503, exc.code, exc.detail)
        return
    await ws.accept()
    conn = SocketConnection(ws, user, session, ws.state.settings.ws_send_queue)
    try:
        await services.hub.attach(conn)
        conn.send_first(dumps({"type": "ready", "user": user_json(user), "conn_id": conn.conn_id}))
        conn.writer = asyncio.create_task(conn.run_writer(), name="ws-writer")
        await _read_loop(ws, conn, services)
    finally:
        await services.hub.detach(conn)
        if conn.in_flight:
            await asyncio.gather(*conn.in_flight, return_exceptions=True)
        conn.close(1000, "bye")
        if conn.writer is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(conn.writer, timeout=5)
            if not conn.writer.done():
                conn.writer.cancel()


async def _refuse(ws: WebSocket, status: int, code: str, detail: str) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": {"code": code, "detail": detail}}, status))
    else:
        await ws.close(code=1008, reason=detail[:120])


async def _read_loop(ws: WebSocket, conn: SocketConnection, services: Services) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            conn.send_text(error_frame("bad_request", "binary frames are not supported; send JSON text"))
            continue
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict):
            if conn.allow_frame():
                detail = "frame is not valid JSON" if frame is None else "frame must be a JSON object"
                conn.send_text(error_frame("bad_request", detail))
            continue
        # Sends meet the per-user message limits; every other frame meets this per-socket limit.
        if frame.get("type") != "send" and not conn.allow_frame():
            conn.send_text(error_frame("rate_limited", "too many frames; slow down", retry_after=1.0))
            continue
        await _dispatch(conn, frame, services)


async def _dispatch(conn: SocketConnection, frame: dict[str, Any], services: Services) -> None:
    kind = frame.get("type")
    if kind == "send":
        if len(conn.in_flight) >= MAX_IN_FLIGHT:
            await asyncio.wait(conn.in_flight, return_when=asyncio.FIRST_COMPLETED)
        # Tasks start in creation order and reach the store's queue before their first real wait,
        # so one socket's messages to a chat get seqs in the order they were sent.
        task = asyncio.create_task(_send(conn, frame, services))
        conn.in_flight.add(task)
        task.add_done_callback(conn.in_flight.discard)
        _slide_session(conn, services)
        return
    try:
        if kind == "ping":
            conn.send_text('{"type":"pong"}')
        elif kind == "typing":
            await services.chats.typing(conn.user, frame.get("chat_id"))
            _slide_session(conn, services)
        elif kind == "read":
            await services.chats.mark_read(conn.user, frame.get("chat_id"), frame.get("seq"))
            _slide_session(conn, services)
        elif isinstance(kind, str):
            conn.send_text(error_frame("bad_request", f"unknown frame type '{kind[:40]}'"))
        else:
            conn.send_text(error_frame("bad_request", "frame needs a string 'type'"))
    except StratochatError as exc:
        conn.send_text(error_frame_for(exc))
    except Exception:
        log.exception("frame %s failed", kind)
        conn.send_text(error_frame("internal", "internal error; it has been logged"))


async def _send(conn: SocketConnection, frame: dict[str, Any], services: Services) -> None:
    cmid = frame.get("client_msg_id")
    try:
        message, _ = await services.messages.send(
            conn.user,
            frame.get("chat_id"),
            frame.get("content"),
            cmid,
            origin=conn.conn_id,
            file_id=frame.get("file_id"),
        )
    except StratochatError as exc:
        conn.send_text(error_frame_for(exc, cmid))
        return
    except Exception:
        log.exception("send failed")
        conn.send_text(error_frame("internal", "internal error; it has been logged", cmid))
        return
    conn.send_text(ack_frame(message.client_msg_id, message))


def _slide_session(conn: SocketConnection, services: Services) -> None:
    """Socket activity keeps the session alive, as requests do; at most one write per refresh interval."""
    accounts = services.accounts
    session = conn.session
    now = services.clock.now_ms()
    if session.expires_at - now > accounts.session_ttl_ms * 0.9:
        return
    # Optimistically move the local copy so concurrent frames do not each write.
    conn.session = Session(
        session.session_id, session.user_id, session.created_at, now + accounts.session_ttl_ms, session.data
    )
    task = asyncio.ensure_future(accounts.touch(session))
    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


class SessionSweeper:
    """Closes sockets whose session expired or was revoked elsewhere (another node's logout reaches
    the hub directly; this catches expiry and deletions made outside the hub)."""

    def __init__(self, services: Services, interval_s: float) -> None:
        self._services = services
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-sweeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.warning("session sweep failed", exc_info=True)

    async def sweep(self) -> None:
        now = self._services.clock.now_ms()
        for conn in list(self._services.hub.connections()):
            if not isinstance(conn, SocketConnection) or conn.session.expires_at > now:
                continue
            current = await self._services.accounts.check_session(conn.session_id)
            if current is None:
                conn.close(CLOSE_SESSION_ENDED, "session expired")
            else:
                conn.session = current
