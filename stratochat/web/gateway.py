"""``/ws``: the handshake (session and Origin), the frame loop, and a bounded outbound queue per socket.

Fan-out never waits on a slow client: frames queue per socket and are written once per loop turn
(``SocketConnection``); a client whose queue overflows is closed (1013) instead of growing memory.
Sends are pipelined: the reader submits each ``send`` frame to the store in order and goes on reading
while the store commits, up to ``MAX_IN_FLIGHT`` per socket (beyond that it stops reading, which
pushes back on the client); each ack follows from its store future, with no task per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from functools import partial
from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from ..core import outbox
from ..core.errors import StratochatError, Unauthorized
from ..core.models import Message, Session, User
from ..core.periodic import Periodic
from ..core.ports import StoredCallback
from ..core.services import Services
from ..logs import request_id
from .access import request_id_of
from .deps import get_origins, get_services, token_of
from .frames import ack_frame, dumps, error_frame, error_frame_for, user_json
from .wsprotocol import DIRECT, DirectWriter

log = logging.getLogger("stratochat.gateway")

MAX_IN_FLIGHT = 64
# Handshakes (authenticate, attach) in progress at once per node; the rest wait their turn.
HANDSHAKES_AT_ONCE = 32
# Closed sockets cleaned up per loop turn (``TurnGate``); the rest wait for later turns.
CLOSINGS_PER_TURN = 32
# Frames other than sends a socket may send: a steady rate and a burst (sends meet the per-user limits).
FRAME_RATE, FRAME_BURST = 100.0, 200.0
CLOSE_SESSION_ENDED = 4401
CLOSE_TOO_SLOW = 1013


class SocketConnection:
    """One accepted socket: what the hub delivers to (``send_text``, ``close``).

    Frames queue in ``_out``. Under our uvicorn protocol (``DirectWriter``) the queue is flushed once
    per loop turn, all of it in one write; elsewhere one writer task sends them through ASGI.
    """

    __slots__ = (
        "_closing",
        "_direct",
        "_out",
        "_scheduled",
        "_started",
        "_waiter",
        "_wake",
        "_ws",
        "conn_id",
        "idle",
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
        extension = ws.scope.get("extensions", {}).get(DIRECT)
        self._direct: DirectWriter | None = extension["writer"] if extension else None
        self._wake: asyncio.Event | None = None if self._direct else asyncio.Event()
        self._scheduled = False
        self._started = False
        self._closing: tuple[int, str] | None = None
        self.max_queue = max_queue
        # Sends submitted to the store and not answered yet (at most MAX_IN_FLIGHT).
        self.in_flight = 0
        # The reader task waits in ``receive`` with nothing queued: a frame may be taken at once.
        self.idle = False
        self._waiter: asyncio.Future[None] | None = None
        # The writer task, or under DirectWriter the task that sends the close frame.
        self.writer: asyncio.Future[None] | None = None
        self.tokens = FRAME_BURST
        self.tokens_at = time.monotonic()

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def direct(self) -> DirectWriter | None:
        """Our uvicorn protocol's extension, when the server has it."""
        return self._direct

    def start(self) -> None:
        """Begin writing (frames queued before this wait, so the ready frame goes first)."""
        self._started = True
        if self._direct is not None:
            self._direct.on_writable = self._flush
            self._flush()
        else:
            self.writer = asyncio.create_task(self._run_writer(), name="ws-writer")

    async def wait_in_flight(self, below: int) -> None:
        """Until fewer than ``below`` sends are in flight."""
        while self.in_flight >= below:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def landed(self) -> None:
        """A send in flight was answered."""
        self.in_flight -= 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send_text(self, frame: str) -> None:
        if self._closing is not None:
            return
        if len(self._out) >= self.max_queue:
            log.warning("closing a socket that cannot keep up", extra={"user_id": self.user_id})
            self._out.clear()
            self.close(CLOSE_TOO_SLOW, "too slow to keep up")
            return
        self._out.append(frame)
        self._kick()

    def send_first(self, frame: str) -> None:
        """Queue ``frame`` ahead of everything already queued (the ready frame)."""
        self._out.appendleft(frame)
        self._kick()

    def close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = (code, reason)
            if self._direct is not None and self._started:
                self._flush()  # at once: what is queued goes out, then the close (``writer`` is set)
            else:
                self._kick()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()
        elif self._started and not self._scheduled:
            self._scheduled = True
            outbox.defer(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        direct = self._direct
        assert direct is not None
        if self._out and not direct.paused:
            if not direct.write_texts(self._out):
                self._closing = self._closing or (1006, "gone")
            self._out.clear()
        if self._closing is not None and self.writer is None and not direct.gone:
            # A peer that went away needs no close frame (a reconnect storm's drop is thousands at once).
            self.writer = asyncio.ensure_future(self._send_close(*self._closing))

    async def _send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close(code, reason)

    def allow_frame(self) -> bool:
        now = time.monotonic()
        self.tokens = min(FRAME_BURST, self.tokens + (now - self.tokens_at) * FRAME_RATE)
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def _run_writer(self) -> None:
        ws, wake = self._ws, self._wake
        assert wake is not None
        try:
            while True:
                await wake.wait()
                wake.clear()
                while self._out:
                    await ws.send({"type": "websocket.send", "text": self._out.popleft()})
                if self._closing is not None:
                    await self._send_close(*self._closing)
                    return
        except Exception:
            # The peer went away; the reader loop sees the disconnect and cleans up.
            self._closing = self._closing or (1006, "gone")


async def serve_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ws``, called by the app before its middleware and router (``StratochatApp``): a socket lives
    for hours, and the twenty-odd middleware and routing coroutines it would otherwise keep open cost
    memory per idle socket and a hop per frame. None of them does anything for a socket that the
    gateway does not do itself (Origin, sessions, errors, the request id)."""
    token = request_id.set(request_id_of(scope))
    ws = WebSocket(scope, receive, send)
    try:
        await websocket_endpoint(ws, receive)
    except OSError:
        pass  # the peer went away mid-handshake (uvicorn's ClientDisconnected): nothing to answer
    except Exception:
        log.exception("socket handler failed")
        if ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(1011, "internal error")
    finally:
        request_id.reset(token)


async def websocket_endpoint(ws: WebSocket, receive: Receive) -> None:
    """The socket's life; once accepted, frames come from the server's ``receive`` itself (Starlette's
    wrapper only re-checks states the loop below already handles)."""
    services = get_services(ws)
    if services.hub.draining:  # shutting down: the balancer retries another node
        await _refuse(ws, 503, "unavailable", "the node is shutting down; connect again")
        return
    origin = ws.headers.get("origin")
    if origin is not None and not get_origins(ws).allowed(origin, ws.headers.get("host")):
        await _refuse(ws, 403, "forbidden", "origin not allowed")
        return
    token, _ = token_of(ws)
    # A reconnect storm is thousands of handshakes at once; taking them a few at a time keeps each
    # loop turn short, so the frames of the sockets already open do not queue behind them.
    handshakes: asyncio.Semaphore = ws.state.handshakes
    await handshakes.acquire()
    held = True
    try:
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
            handshakes.release()
            held = False
            conn.send_first(dumps({"type": "ready", "user": user_json(user), "conn_id": conn.conn_id}))
            conn.start()
            await _read_loop(receive, conn, services)
        finally:
            # A socket that closed can wait its turn behind the frames of those still open (cancelled
            # meanwhile, it is still detached: the hub must not keep it).
            with contextlib.suppress(asyncio.CancelledError):
                await ws.state.closings.wait()
            await services.hub.detach(conn)
            await conn.wait_in_flight(1)
            conn.close(1000, "bye")
            if conn.writer is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(conn.writer, timeout=5)
                if not conn.writer.done():
                    conn.writer.cancel()
    finally:
        if held:
            handshakes.release()


async def _refuse(ws: WebSocket, status: int, code: str, detail: str) -> None:
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": {"code": code, "detail": detail}}, status))
    else:
        await ws.close(code=1008, reason=detail[:120])


async def _read_loop(receive: Receive, conn: SocketConnection, services: Services) -> None:
    direct = conn.direct
    if direct is not None:
        # Log lines keep the socket's request id (set here, not a copy of the task's context per socket:
        # each is objects the collector walks for every open socket).
        rid = request_id.get()

        def on_text(text: str) -> bool:
            token = request_id.set(rid)
            try:
                return _take_now(conn, services, text)
            finally:
                request_id.reset(token)

        direct.on_text = on_text
    try:
        while True:
            conn.idle = True
            message = await receive()
            conn.idle = False
            if message["type"] == "websocket.disconnect":
                return
            await _handle(message, conn, services)
    finally:
        conn.idle = False
        if direct is not None:
            direct.on_text = None


def _take_now(conn: SocketConnection, services: Services, text: str) -> bool:
    """The direct read path (``DirectWriter.on_text``): a frame the node answers without waiting (a
    text send it can check from its caches, a ping) is handled here, in the protocol's callback, with
    no queue and no task wake-up. False hands the frame to the reader task (anything that awaits, or
    that is malformed), which also holds every later frame behind it, so a socket's order is kept."""
    if not conn.idle:
        return False
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(frame, dict):
        return False
    kind = frame.get("type")
    if kind == "ping":
        if not conn.allow_frame():
            return False
        conn.send_text('{"type":"pong"}')
        return True
    if kind != "send" or frame.get("file_id") is not None or conn.in_flight >= MAX_IN_FLIGHT:
        return False
    cmid = frame.get("client_msg_id")
    try:
        fut = services.messages.submit(
            conn.user, frame.get("chat_id"), frame.get("content"), cmid, origin=conn.conn_id, then=_then_ack(conn, cmid)
        )
        if fut is None:
            return False
        conn.in_flight += 1
        _slide_session(conn, services)
    except StratochatError as exc:
        conn.send_text(error_frame_for(exc, cmid))
    except Exception:
        log.exception("frame send failed")
        conn.send_text(error_frame("internal", "internal error; it has been logged", cmid))
    return True


async def _handle(message: Any, conn: SocketConnection, services: Services) -> None:
    """One frame through ``receive``."""
    text = message.get("text")
    if text is None:
        conn.send_text(error_frame("bad_request", "binary frames are not supported; send JSON text"))
        return
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        frame = None
    if not isinstance(frame, dict):
        if conn.allow_frame():
            detail = "frame is not valid JSON" if frame is None else "frame must be a JSON object"
            conn.send_text(error_frame("bad_request", detail))
        return
    # Sends meet the per-user message limits; every other frame meets this per-socket limit.
    if frame.get("type") != "send" and not conn.allow_frame():
        conn.send_text(error_frame("rate_limited", "too many frames; slow down", retry_after=1.0))
        return
    await _dispatch(conn, frame, services)


async def _dispatch(conn: SocketConnection, frame: dict[str, Any], services: Services) -> None:
    kind = frame.get("type")
    try:
        if kind == "send":
            await _send(conn, frame, services)
            _slide_session(conn, services)
        elif kind == "ping":
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
        conn.send_text(error_frame_for(exc, frame.get("client_msg_id") if kind == "send" else None))
    except Exception:
        log.exception("frame %s failed", kind)
        conn.send_text(error_frame("internal", "internal error; it has been logged"))


async def _send(conn: SocketConnection, frame: dict[str, Any], services: Services) -> None:
    """Pipelined: a text message whose checks the node can answer at once goes to the store and the
    reader goes on (its ack follows from the store's future, in order); anything that needs the
    store first (an uncached chat, a file, the burst limit) is done here, holding the reader, so a
    socket's messages keep their order."""
    await conn.wait_in_flight(MAX_IN_FLIGHT)
    cmid = frame.get("client_msg_id")
    chat_id, content = frame.get("chat_id"), frame.get("content")
    file_id = frame.get("file_id")
    fut = None
    if file_id is None:
        ack = _then_ack(conn, cmid)
        fut = services.messages.submit(conn.user, chat_id, content, cmid, origin=conn.conn_id, then=ack)
    if fut is not None:
        conn.in_flight += 1
        return
    message, _ = await services.messages.send(conn.user, chat_id, content, cmid, origin=conn.conn_id, file_id=file_id)
    conn.send_text(ack_frame(message.client_msg_id, message))


def _then_ack(conn: SocketConnection, cmid: object) -> StoredCallback:
    """The ack of a pipelined send (counted in ``conn.in_flight`` once the send is submitted)."""
    return partial(_acked, conn, cmid)


def _acked(conn: SocketConnection, cmid: object, fut: asyncio.Future[tuple[Message, bool]]) -> None:
    conn.landed()
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is None:
        message, _ = fut.result()
        conn.send_text(ack_frame(message.client_msg_id, message))
    elif isinstance(exc, StratochatError):
        conn.send_text(error_frame_for(exc, cmid))
    else:
        log.error("send failed", exc_info=exc)
        conn.send_text(error_frame("internal", "internal error; it has been logged", cmid))


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


class SessionSweeper(Periodic):
    """Closes sockets whose session expired or was revoked elsewhere (another node's logout reaches
    the hub directly; this catches expiry and deletions made outside the hub)."""

    name = "session-sweeper"
    failure = "session sweep failed"

    def __init__(self, services: Services, interval_s: float) -> None:
        super().__init__(interval_s)
        self._services = services

    async def step(self) -> None:
        await self.sweep()

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
