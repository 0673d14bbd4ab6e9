"""uvicorn's sans-I/O WebSocket protocol with a direct write path for the gateway.

Through ASGI every outbound frame costs a coroutine, the middleware chain and one ``transport.write``
(a syscall), and uvicorn pauses and resumes reading around every inbound frame. A profile of the
``pairs`` bench put a third of the server's time there. This protocol keeps ASGI for everything
(handshake, receive, close) and adds one extension, ``scope["extensions"]["stratochat.direct"]``:
the gateway queues a socket's frames during a loop turn and writes them with one call and one
syscall (all the acks of a group commit at once), and it may take each inbound text frame at once,
in the protocol's own callback, instead of through ``receive`` (an asyncio queue and a task wake-up
per frame). Reading pauses only once frames pile up. Any other ASGI server simply lacks the
extension, and the gateway falls back to ASGI sends and receives.

Closing handshakes and lost connections are handled a few per loop turn (``TurnPacer``): when
thousands of clients go at once (a network blip, a balancer that restarts), their closes all become
ready in one turn of the loop, and a quarter of a second of close frames, writes and cleanups held
every other socket's frames behind them.
"""

from __future__ import annotations

import asyncio
import struct
import weakref
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import OPEN, Protocol
from websockets.streams import StreamReader

from .pacing import TurnPacer

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    from websockets.utils import apply_mask

DIRECT = "stratochat.direct"
# Inbound frames a socket may have queued for the app before the server stops reading it.
READ_AHEAD = 16
# The first byte of a whole, unfragmented text frame without extension bits (FIN, opcode 1), either way.
FIN_TEXT = 0x81
# Closing handshakes and lost connections handled per loop turn; the rest wait for later turns.
CLOSINGS_PER_TURN = 32
_OPCODE_CLOSE = 0x8
_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnPacer] = weakref.WeakKeyDictionary()
# Where websockets' parser waits between two frames (inside a frame it waits in Frame.parse).
_BETWEEN_FRAMES = StreamReader.at_eof.__code__


def between_frames(conn: Protocol) -> bool:
    """websockets' parser has consumed every byte it was given and waits for a frame's first byte."""
    if conn.current_size is not None:  # a fragmented message is under way
        return False
    gen = conn.parser  # the handshake's parser, which delegates to the frames' parser, which waits
    while (inner := getattr(gen, "gi_yieldfrom", None)) is not None:
        gen = inner
    return getattr(gen, "gi_code", None) is _BETWEEN_FRAMES


def closing_pacer(loop: asyncio.AbstractEventLoop) -> TurnPacer:
    """The loop's pacer of closing handshakes and lost connections (one per loop: all its sockets)."""
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = TurnPacer(loop, CLOSINGS_PER_TURN)
    return pacer


def text_frame_header(length: int) -> bytes:
    """The header of a server's text frame (RFC 6455 section 5.2): FIN, opcode 1, no mask (a server
    never masks), no extension bits, and the payload length in 7, 7+16 or 7+64 bits."""
    if length < 126:
        return bytes((FIN_TEXT, length))
    if length < 65536:
        return struct.pack("!BBH", FIN_TEXT, 126, length)
    return struct.pack("!BBQ", FIN_TEXT, 127, length)


class DirectWriter:
    """What the extension hands the gateway: synchronous writes, whether the peer keeps up, and a
    hook for inbound text frames."""

    __slots__ = ("_protocol", "on_text", "on_writable")

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol: DirectWebSocketProtocol | None = protocol
        # Called when a full transport buffer has drained (the gateway flushes what it held back).
        self.on_writable: Callable[[], None] | None = None
        # Offered each text frame while nothing is queued for ``receive``; True when it took the frame
        # (then ``receive`` never sees it), False to have it queued as usual. Order is kept: once one
        # frame is queued, the ones after it are queued too until ``receive`` has emptied the queue.
        self.on_text: Callable[[str], bool] | None = None

    @property
    def paused(self) -> bool:
        """The transport's buffer is over its high-water mark: hold frames back."""
        p = self._protocol
        return p is not None and not p.writable.is_set()

    @property
    def gone(self) -> bool:
        """The connection is lost: nothing more can be sent, not even a close frame."""
        p = self._protocol
        return p is None or p.disconnected

    def write_texts(self, texts: Iterable[str]) -> bool:
        """Frame every text and write them at once; False when the socket can no longer send."""
        p = self._protocol
        if p is None or p.close_sent or p.disconnected or not p.handshake_complete:
            return False
        conn = p.conn
        if conn.extensions or conn.state is not OPEN or conn.expect_continuation_frame:
            # permessage-deflate (or a closing connection): websockets frames them.
            try:
                for text in texts:
                    conn.send_text(text.encode())
            except InvalidState:
                return False
            p.transport.write(b"".join(conn.data_to_send()))
            return True
        # Framed here: websockets' Frame and serialize cost about 7 us a frame, two frames a message.
        parts = conn.data_to_send()  # what websockets has queued (a pong) goes first
        for text in texts:
            payload = text.encode()
            parts.append(text_frame_header(len(payload)))
            parts.append(payload)
        p.transport.write(b"".join(parts))
        return True

    def detach(self) -> None:
        """The connection is gone: drop every reference between the protocol and the gateway."""
        self._protocol = None
        self.on_writable = None
        self.on_text = None


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """``--ws`` for Stratochat: see the module's docstring."""

    direct: DirectWriter | None = None
    # Bytes from a close frame on, waiting for the pacer's turn (later bytes queue behind them).
    _held: list[bytes] | None = None
    # The connection is lost and its cleanup waits for the pacer's turn.
    _lost_pending = False

    def connection_lost(self, exc: Exception | None) -> None:
        """Paced: nothing more can be sent from here on (``disconnected``), and the cleanup (uvicorn's,
        and the app's disconnect) runs when the pacer lets it."""
        self._held = None  # a close frame not answered yet: the peer did not wait for the answer
        self._lost_pending = True
        self.disconnected = True
        closing_pacer(self.loop).defer(partial(self._lost, exc))

    def _lost(self, exc: Exception | None) -> None:
        self._lost_pending = False
        super().connection_lost(exc)
        # Break the reference cycles a connection is made of (protocol <-> writer <-> gateway, and
        # websockets' parser generator, which holds its protocol), so a closed socket is freed by
        # reference counting when it goes, not by the garbage collector: a reconnect storm's thousands
        # of dropped sockets made collections of 100 ms and more that stopped the whole node.
        if self.direct is not None:
            self.direct.detach()
        self.conn.parser.close()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # an upgrade that uvicorn accepted; the app task has not run yet
            self.direct = DirectWriter(self)
            scope["extensions"][DIRECT] = {"writer": self.direct}

    def shutdown(self) -> None:
        if self._lost_pending:  # gone: its paced cleanup will tell the app
            return
        super().shutdown()

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after it has written the 101 that completes the handshake.
        super().start_keepalive()
        self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Let go of what only the handshake needed: uvicorn keeps its request and response for the
        socket's life, and websockets its extension factories. That was 17 of the 93 objects per socket
        that the garbage collector walks (each header name a dict entry with a list of values), and
        a reconnect storm's collections walk every new socket's. The request's headers are emptied in
        place: websockets' parser generator keeps the request in a local variable for good."""
        for handshake in (self.request, self.response):
            if handshake is not None:
                handshake.headers.clear()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        self.conn.available_extensions = ()

    def data_received(self, data: bytes) -> None:
        """Whole text frames at the start of ``data`` are unmasked here; websockets parses the rest.
        Its parser is a generator that reads a frame's header, mask and payload in separate steps (4
        us a frame, an eighth of the event loop's time in the ``pairs`` bench). Taken here only where
        websockets would do nothing but hand the payload on: an open connection without extensions,
        its parser between frames (all it was given consumed, no fragmented message under way), a masked
        frame with FIN, opcode text, no reserved bits, a 7- or 16-bit length within the size limit,
        all of it in ``data``. Anything else (a control frame, a fragment, a frame cut in two, one too
        big, one unmasked) and everything after it go to websockets, which then errs or buffers as
        it always does. A close frame, and whatever follows it, waits for the closing pacer."""
        if self._held is not None:  # a close frame waits its turn: what follows waits behind it
            self._held.append(data)
            return
        conn = self.conn
        if conn.state is OPEN and not conn.extensions and not self.close_sent and between_frames(conn):
            limit = conn.max_message_size
            end, size = 0, len(data)
            while end + 6 <= size and data[end] == FIN_TEXT:
                n = data[end + 1] ^ 0x80  # the mask bit must be set: what is left is the length
                start = end + 6
                if n == 126:
                    start = end + 8
                    if start > size:
                        break
                    n = (data[end + 2] << 8) | data[end + 3]
                elif n > 126:  # unmasked, or a 64-bit length
                    break
                if (limit is not None and n > limit) or start + n > size:
                    break
                self.frames = [apply_mask(data[start : start + n], data[start - 4 : start])]
                self.curr_msg_data_type = "text"
                end = start + n
                self._to_app()
                if self.close_sent or conn.state is not OPEN:
                    break
            if end:
                data = data[end:]
                if not data:
                    return
        if (
            data[0] & 0x0F == _OPCODE_CLOSE
            and conn.state is OPEN
            and not self.close_sent
            and not self.disconnected
            and between_frames(conn)
        ):
            self._held = [data]
            closing_pacer(self.loop).defer(self._closing_turn)
            return
        super().data_received(data)

    def _closing_turn(self) -> None:
        """The pacer's turn for a peer's close frame: websockets answers it, uvicorn closes the socket."""
        held, self._held = self._held, None
        if held is not None and not self.disconnected:
            super().data_received(b"".join(held))

    def resume_writing(self) -> None:
        super().resume_writing()
        hook = self.direct.on_writable if self.direct is not None else None
        if hook is not None:
            hook()

    def handle_text(self, event: Frame) -> None:
        self.curr_msg_data_type = "text"
        self.frames = [event.data]  # type: ignore[list-item]
        if event.fin:
            self._to_app()

    def handle_bytes(self, event: Frame) -> None:
        self.curr_msg_data_type = "bytes"
        self.frames = [event.data]  # type: ignore[list-item]
        if event.fin:
            self._to_app()

    def handle_cont(self, event: Frame) -> None:
        self.frames.append(event.data)  # type: ignore[arg-type]
        if event.fin:
            self._to_app()

    def _to_app(self) -> None:
        # uvicorn's send_receive_event_to_app, pausing at READ_AHEAD queued frames instead of after
        # each one (a pause and a resume per frame are two epoll changes); ``receive`` still resumes
        # reading once the app has emptied the queue.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.logger.info("closing a socket that sent invalid UTF-8")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            hook = self.direct.on_text if self.direct is not None else None
            if hook is not None and self.queue.empty() and hook(text):
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused and self.queue.qsize() >= READ_AHEAD:
            self.read_paused = True
            self.transport.pause_reading()


class UpgradingHttpProtocol(HttpToolsProtocol):
    """``--http`` for Stratochat: uvicorn's httptools protocol, which lets go of its parser once it has
    handed the connection to the WebSocket protocol. The parser holds the protocol's callbacks, and
    uvicorn breaks that cycle only when an HTTP connection is lost, which an upgraded one never is."""

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]
