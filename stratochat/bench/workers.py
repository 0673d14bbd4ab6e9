"""A load-generator process: its share of the clients, driven phase by phase by the coordinator.

Messages on the pipe are ``(kind, payload dict)``. Coordinator to worker: the WorkerPlan first, then
``go`` / ``drain`` (pairs, fanout), ``stop`` (idle), ``live`` / ``drop`` / ``reconnect`` / ``stop_live`` /
``drain`` (reconnect). Worker to coordinator: ``connected``, ``progress`` (twice a second), ``sent``,
``dropped``, ``recovered``, ``result``, or ``failed`` with a traceback. Every phase is bounded; the worker
exits when the pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import os
import resource
import sys
import threading
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .http import Connections, HttpError
from .scenarios import ClientSpec, WorkerPlan
from .stats import Bitmap, Histogram, missing

PROGRESS_S = 0.5
# HTTP connections of one worker while clients recover (reconnect).
HTTP_CONNECTIONS = 32
FAR = 1 << 62


def describe(exc: BaseException) -> str:
    """A short, countable name for a failure (error counters are keyed by it)."""
    if isinstance(exc, InvalidStatus):
        return f"http {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        return f"closed {rcvd.code}" if rcvd is not None else "closed (no close frame)"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}({exc.errno})"
    return type(exc).__name__


class Client:
    __slots__ = ("known", "last_n", "last_seq", "reader", "received", "recovered", "recovery_ns", "spec", "ws")

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        # sender key -> message numbers received from it
        self.received: dict[int, Bitmap] = {k: Bitmap() for k in spec.receives_from}
        self.last_seq: dict[str, int] = {}
        self.last_n: dict[int, int] = {}
        # reconnect: chat -> highest seq seen, and the seqs recovered after reconnecting
        self.known: dict[str, int] = dict.fromkeys(spec.chats, 0)
        self.recovered: dict[str, set[int]] = {c: set() for c in spec.chats}
        self.recovery_ns: int | None = None


class Sender:
    __slots__ = ("acked", "chat_id", "client", "errored", "key", "n", "offered", "sent", "window")

    def __init__(self, client: Client, window: int) -> None:
        assert client.spec.sender_key is not None and client.spec.chat_id is not None
        self.key = client.spec.sender_key
        self.client = client
        self.chat_id = client.spec.chat_id
        self.window = asyncio.Semaphore(window)
        self.n = 0
        self.sent = 0
        self.errored = 0
        # Open loop: the messages its schedule offered before the stop, sent or not (None: closed loop).
        self.offered: int | None = None
        self.acked = Bitmap()


class Worker:
    def __init__(self, conn: Connection, plan: WorkerPlan) -> None:
        self.conn = conn
        self.plan = plan
        self.contract = plan.target == "stratochat"
        # Socket.IO v5 over Engine.IO v4, spoken directly over the same websockets client, so one
        # generator, one clock and one loss/duplicate account drive every target alike.
        self.sio = plan.target == "socketio"
        self.clients = [Client(s) for s in plan.clients]
        self.senders: dict[int, Sender] = {
            c.spec.sender_key: Sender(c, plan.window) for c in self.clients if c.spec.sender_key is not None
        }
        self.errors: Counter[str] = Counter()
        self.delivered = 0
        self.window_delivered = 0
        self.duplicates = 0
        self.recovery_duplicates = 0
        self.out_of_order = 0
        self.connected = 0
        self.hist = Histogram()
        # Messages due before the measured window (warmup; in reconnect the live traffic before the drop).
        self.hist_before = Histogram()
        # Open loop: how late each message went out after it was due (the generator's own lag).
        self.lag = Histogram()
        self.t_measure = FAR
        self.t_stop = FAR
        self.stopping = False
        self.closing = False
        self.cpu_window = 0.0
        self.inbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.pad = "x" * max(0, plan.size - 40)

    # the pipe ------------------------------------------------------------------------------------
    def send(self, kind: str, **payload: Any) -> None:
        self.conn.send((kind, payload))

    async def command(self, kind: str) -> dict[str, Any]:
        msg = await self.inbox.get()
        if msg is None:
            raise SystemExit(0)  # the coordinator went away
        got, payload = msg
        if got != kind:
            raise RuntimeError(f"expected {kind!r} from the coordinator, got {got!r}")
        return payload

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            extra = sum(1 for c in self.clients if c.recovery_ns is not None)
            self.send(
                "progress",
                delivered=self.delivered,
                errors=sum(self.errors.values()),
                recovered=extra,
                connected=self.connected,
            )

    # main ----------------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start_pipe_reader(self.conn, loop, self.inbox)
        progress = asyncio.create_task(self._progress())
        try:
            await getattr(self, f"_run_{self.plan.scenario}")()
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            await self.close_all()

    async def _run_pairs(self) -> None:
        await self._run_traffic()

    async def _run_fanout(self) -> None:
        await self._run_traffic()

    async def _run_traffic(self) -> None:
        await self.connect_all()
        go = await self.command("go")
        self.t_measure, self.t_stop = go["t_measure"], go["t_stop"]
        meter = asyncio.create_task(self._meter_cpu())
        tasks = [asyncio.create_task(self._send_loop(s, go["t_go"])) for s in self.senders.values()]
        stopper = asyncio.create_task(self._stop_at(self.t_stop))
        await asyncio.gather(*tasks)
        stopper.cancel()
        await meter
        await self._finish_traffic()
        self.send("result", **self._traffic_result(), cpu_window=self.cpu_window)

    async def _finish_traffic(self) -> None:
        """After the senders stopped: wait for the acks, report what was sent, learn what each of our
        receivers should get, and wait until they got it (or nothing moved for ``drain`` s)."""
        # Every send gets an ack or an error frame; wait for those still on the way.
        await self._until(lambda: sum(s.sent - s.acked.size - s.errored for s in self.senders.values()))
        self.send(
            "sent",
            senders={
                k: {
                    "sent": s.sent,
                    "acked": s.acked.size if self.contract else s.sent,
                    "acked_bits": bytes(s.acked.bits),
                    "errored": s.errored,
                    "offered": s.offered,
                }
                for k, s in self.senders.items()
            },
        )
        expected: dict[int, bytes] = (await self.command("drain"))["expected"]

        def left() -> int:
            return sum(
                missing(expected.get(k, b""), bytes(bm.bits)) for c in self.clients for k, bm in c.received.items()
            )

        await self._until(left, poll=0.1)

    def _traffic_result(self) -> dict[str, Any]:
        return dict(
            delivered=self.delivered,
            window_delivered=self.window_delivered,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            hist=self.hist,
            hist_before=self.hist_before,
            lag=self.lag,
            errors=dict(self.errors),
            received=[{k: bytes(bm.bits) for k, bm in c.received.items()} for c in self.clients if c.received],
        )

    async def _run_idle(self) -> None:
        await self.connect_all()
        await self.command("stop")
        open_now = sum(1 for c in self.clients if c.ws is not None and c.reader is not None and not c.reader.done())
        self.send("result", errors=dict(self.errors), still_open=open_now)

    async def _run_reconnect(self) -> None:
        await self.connect_all()
        # The live pairs (a worker of their own; none in the others) start sending and keep on until the
        # coordinator has seen every client recover; their latency counts from the drop on.
        t_go: int = (await self.command("live"))["t_go"]
        cpu_live = time.process_time()
        live = [asyncio.create_task(self._send_loop(s, t_go)) for s in self.senders.values()]
        self.t_measure = (await self.command("drop"))["t_measure"]
        dropping = [c for c in self.clients if c.spec.chats]
        await self.close_all(dropping)
        self.closing = False
        self.send("dropped", errors=dict(self.errors))
        t0: int = (await self.command("reconnect"))["t0"]
        cpu0 = time.process_time()
        # A fixed set of kept-alive connections, each request waiting for a free one (bench/http.py: a
        # sixth of httpx's CPU per request, which was two thirds of a recovering worker's).
        conns = min(HTTP_CONNECTIONS, self.plan.connect_concurrency)
        async with Connections(self.plan.base_url, conns, self.plan.timeout) as http:
            sem = asyncio.Semaphore(self.plan.connect_concurrency)
            tasks = [asyncio.create_task(self._recover(c, http, sem, t0)) for c in dropping]
            _, pending = await asyncio.wait(tasks, timeout=self.plan.timeout) if tasks else (set(), set())
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                self.errors[f"recover: not done within {self.plan.timeout:g} s"] += len(pending)
        self.send(
            "recovered",
            errors=dict(self.errors),
            duplicates=self.recovery_duplicates,
            cpu=time.process_time() - cpu0,
            clients=[
                {"recovered": {k: sorted(v) for k, v in c.recovered.items()}, "recovery_ns": c.recovery_ns}
                for c in dropping
            ],
        )
        self.t_stop = (await self.command("stop_live"))["t_stop"]
        await asyncio.gather(*live)
        cpu_live = time.process_time() - cpu_live if live else 0.0
        await self._finish_traffic()
        self.send("result", **self._traffic_result(), cpu_window=cpu_live)

    # phases --------------------------------------------------------------------------------------
    async def _until(self, remaining: Any, poll: float = 0.05) -> None:
        """Wait until ``remaining()`` is 0, or it has not moved for ``drain`` seconds (the rest is lost)."""
        last, since = remaining(), time.monotonic()
        while last > 0:
            await asyncio.sleep(poll)
            now_left = remaining()
            if now_left != last:
                last, since = now_left, time.monotonic()
            elif time.monotonic() - since > self.plan.drain:
                return

    async def _stop_at(self, t_stop: int) -> None:
        await asyncio.sleep(max(0.0, (t_stop - time.monotonic_ns()) / 1e9))
        self.stopping = True
        for s in self.senders.values():
            s.window.release()  # wake a sender waiting on its window so it sees the stop

    async def _meter_cpu(self) -> None:
        await asyncio.sleep(max(0.0, (self.t_measure - time.monotonic_ns()) / 1e9))
        start = time.process_time()
        await asyncio.sleep(max(0.0, (self.t_stop - time.monotonic_ns()) / 1e9))
        self.cpu_window = time.process_time() - start

    async def connect_all(self) -> None:
        sem = asyncio.Semaphore(self.plan.connect_concurrency)
        started = time.monotonic()
        await asyncio.gather(*(self._open(c, sem) for c in self.clients))
        ok = sum(1 for c in self.clients if c.ws is not None)
        self.send("connected", ok=ok, errors=dict(self.errors), seconds=time.monotonic() - started)
        self.connected = 0  # from here on it counts the reconnections

    async def _open(self, client: Client, sem: asyncio.Semaphore) -> bool:
        headers = {"Authorization": f"Bearer {client.spec.token}"} if client.spec.token else {}
        async with sem:
            try:
                ws = await connect(
                    client.spec.ws_url,
                    additional_headers=headers,
                    open_timeout=self.plan.timeout,
                    max_size=None,
                    compression="deflate" if self.plan.deflate else None,
                    ping_interval=None,  # the server pings; answering is automatic
                    close_timeout=2,
                    proxy=None,
                    user_agent_header="stratochat-bench",
                )
            except Exception as exc:
                self.errors[f"connect: {describe(exc)}"] += 1
                return False
            if self.contract:
                try:
                    ready = orjson.loads(await asyncio.wait_for(ws.recv(), self.plan.timeout))
                    if ready.get("type") != "ready":
                        raise ValueError(f"first frame was {ready.get('type')!r}, not ready")
                except Exception as exc:
                    self.errors[f"ready: {describe(exc)}"] += 1
                    await ws.close()
                    return False
            elif self.sio:
                try:
                    await asyncio.wait_for(self._sio_connect(ws, client.spec.room), self.plan.timeout)
                except Exception as exc:
                    self.errors[f"socket.io connect: {describe(exc)}"] += 1
                    await ws.close()
                    return False
        client.ws = ws
        client.reader = asyncio.create_task(self._read(client))
        self.connected += 1
        return True

    @staticmethod
    async def _sio_connect(ws: ClientConnection, room: str | None) -> None:
        """Engine.IO open packet (``0{sid, pingInterval, ...}``), then the Socket.IO CONNECT to the default
        namespace with our room as auth (``40{...}``), answered by ``40{"sid": ...}`` or a CONNECT_ERROR."""
        opened = await ws.recv()
        if not isinstance(opened, str) or not opened.startswith("0"):
            raise ValueError(f"expected an Engine.IO open packet, got {str(opened)[:40]!r}")
        await ws.send("40" + orjson.dumps({"key": room}).decode())
        while True:
            reply = await ws.recv()
            if reply == "2":  # a ping this early: answer it and keep waiting
                await ws.send("3")
                continue
            if isinstance(reply, str) and reply.startswith("40"):
                return
            raise ValueError(f"socket.io connect refused: {str(reply)[:80]!r}")

    async def close_all(self, clients: list[Client] | None = None) -> None:
        self.closing = True
        open_ = [c for c in (self.clients if clients is None else clients) if c.ws is not None]
        if open_:
            await asyncio.wait(
                [asyncio.ensure_future(c.ws.close()) for c in open_ if c.ws is not None], timeout=self.plan.timeout
            )
        for c in open_:
            if c.reader is not None:
                c.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await c.reader
            c.ws = None
            c.reader = None

    # sending -------------------------------------------------------------------------------------
    async def _send_loop(self, s: Sender, t_go: int) -> None:
        await asyncio.sleep(max(0.0, (t_go - time.monotonic_ns()) / 1e9))
        rate = self.plan.rate_per_sender
        if rate is None:
            while True:
                await s.window.acquire()
                if self.stopping or not await self._send_one(s, time.monotonic_ns()):
                    return
        interval = max(1, int(1e9 / rate))
        # Senders start spread over one interval, so an open loop does not send in bursts.
        first = due = t_go + (s.key * 7919 * 1_000_003) % interval
        try:
            while due < self.t_stop:
                now = time.monotonic_ns()
                if due > now:
                    await asyncio.sleep((due - now) / 1e9)
                    if due >= self.t_stop:  # the stop came while we slept (reconnect's live pairs)
                        break
                    now = time.monotonic_ns()
                if self.t_measure <= due:
                    self.lag.add(now - due)
                # Timed from when it was due, not when it went out: a late send counts as latency.
                if not await self._send_one(s, due):
                    return
                due += interval
        finally:
            # What the schedule offered before the stop, whatever the generator or the socket managed.
            # Reconnect's live pairs learn of their stop from the coordinator, after it: a send due in
            # between went out, so it was offered too.
            s.offered = max(0, math.ceil((self.t_stop - first) / interval), s.n) if self.t_stop < FAR else s.n

    async def _send_one(self, s: Sender, t: int) -> bool:
        ws = s.client.ws
        if ws is None:
            return False
        n = s.n
        s.n += 1
        content = f"{s.key}:{n}:{t}:{self.pad}"
        if self.sio:
            # An EVENT packet (4 = Engine.IO message, 2 = Socket.IO EVENT) to the default namespace.
            frame = b"42" + orjson.dumps(["send", {"to": s.chat_id, "content": content}])
        else:
            frame = orjson.dumps(
                {"type": "send", "chat_id": s.chat_id, "content": content, "client_msg_id": f"{s.key}-{n}"}
            )
        try:
            await ws.send(frame, text=True)
        except ConnectionClosed as exc:
            self.errors[f"send: {describe(exc)}"] += 1
            return False
        s.sent += 1
        if not self.contract:
            s.acked.add(n)  # the relay acknowledges nothing: what went out counts as acked
        return True

    # receiving -----------------------------------------------------------------------------------
    async def _read(self, client: Client) -> None:
        ws = client.ws
        assert ws is not None
        try:
            async for raw in ws:
                now = time.monotonic_ns()
                try:
                    if self.sio:
                        await self._on_sio_packet(client, ws, raw, now)
                    else:
                        self._on_frame(client, orjson.loads(raw), now)
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError, IndexError):
                    self.errors["bad frame"] += 1
        except ConnectionClosed as exc:
            if not self.closing:
                self.errors[describe(exc)] += 1
            return
        if not self.closing:
            self.errors["closed by the server"] += 1

    def _on_frame(self, client: Client, frame: dict[str, Any], now: int) -> None:
        kind = frame.get("type")
        if not self.contract:
            if kind == "send":
                self._delivery(client, frame["content"], now, None, None)
            return
        if kind == "message":
            m = frame["message"]
            self._delivery(client, m["content"], now, m["chat_id"], m["seq"])
        elif kind == "ack":
            key, _, n = str(frame.get("client_msg_id")).partition("-")
            sender = self.senders.get(int(key))
            if sender is not None:
                sender.acked.add(int(n))
        elif kind == "error":
            self.errors[f"error frame: {frame.get('code')}"] += 1
            cmid = frame.get("client_msg_id")
            if isinstance(cmid, str) and "-" in cmid:
                sender = self.senders.get(int(cmid.partition("-")[0]))
                if sender is not None:
                    sender.errored += 1
                    sender.window.release()  # refused: it will not be delivered

    async def _on_sio_packet(self, client: Client, ws: ClientConnection, raw: str | bytes, now: int) -> None:
        if not isinstance(raw, str):
            raise ValueError("binary packet")
        if raw == "2":  # Engine.IO ping from the server: a pong, or it closes the socket
            await ws.send("3")
        elif raw.startswith("42"):
            event, data = orjson.loads(raw[2:])[:2]
            if event == "message":
                self._delivery(client, data["content"], now, None, None)
            else:
                self.errors[f"socket.io event: {event}"] += 1
        elif raw.startswith("41") or raw.startswith("1"):
            self.errors["socket.io disconnect"] += 1
        elif raw.startswith("44"):
            self.errors["socket.io connect_error"] += 1
        elif raw != "6":  # 6 is a noop
            self.errors["bad frame"] += 1

    def _delivery(self, client: Client, content: str, now: int, chat_id: str | None, seq: int | None) -> None:
        if client.spec.chats:  # a reconnecting client: recovery counts by seq
            if chat_id is not None and seq is not None and chat_id in client.recovered:
                self._recovered(client, chat_id, seq)
            return
        key_s, n_s, t_s, _ = content.split(":", 3)
        key, n, t = int(key_s), int(n_s), int(t_s)
        bitmap = client.received.get(key)
        if bitmap is None:
            if key == client.spec.sender_key:
                # The contract sends the sending socket an ack, and the message only to the other sockets.
                self.errors["own message echoed to its sending socket"] += 1
            else:
                self.errors["message from an unexpected sender"] += 1
            return
        if not bitmap.add(n):
            self.duplicates += 1
            return
        if chat_id is not None and seq is not None:
            if seq <= client.last_seq.get(chat_id, 0):
                self.out_of_order += 1
            else:
                client.last_seq[chat_id] = seq
        elif n < client.last_n.get(key, -1):
            self.out_of_order += 1
        else:
            client.last_n[key] = n
        self.delivered += 1
        if self.t_measure <= now < self.t_stop:
            self.window_delivered += 1
        if self.t_measure <= t < self.t_stop:
            self.hist.add(now - t)
        elif t < self.t_measure:
            self.hist_before.add(now - t)
        if key in client.spec.tracks:
            sender = self.senders.get(key)
            if sender is not None:
                sender.window.release()

    # reconnect -----------------------------------------------------------------------------------
    def _recovered(self, client: Client, chat_id: str, seq: int) -> None:
        got = client.recovered[chat_id]
        if seq in got:
            self.recovery_duplicates += 1
        got.add(seq)
        client.known[chat_id] = max(client.known[chat_id], seq)

    async def _recover(self, client: Client, http: Connections, sem: asyncio.Semaphore, t0: int) -> None:
        """Reconnect as the contract says a client must: socket first (nothing new is missed), then the
        inbox (``last_seq`` per chat), then ``after=`` pages up to it."""
        if not await self._open(client, sem):
            return
        headers = {"Authorization": f"Bearer {client.spec.token}"}
        try:
            r = await http.request("GET", "/api/chats", headers)
            last = {c["chat_id"]: int(c["last_seq"]) for c in r.json()["chats"]}
            for chat_id in client.spec.chats:
                after = client.known[chat_id]
                target = last.get(chat_id, 0)
                for _ in range(10_000):
                    if after >= target:
                        break
                    r = await http.request("GET", f"/api/chats/{chat_id}/messages?after={after}&limit=200", headers)
                    page = r.json()
                    for m in page["messages"]:
                        self._recovered(client, chat_id, int(m["seq"]))
                    if not page["messages"] or not page["has_more"]:
                        break
                    after = int(page["messages"][-1]["seq"])
        except (HttpError, KeyError, ValueError, TypeError) as exc:
            code = exc.code if isinstance(exc, HttpError) else type(exc).__name__
            self.errors[f"recover: {code}"] += 1
            return
        client.recovery_ns = time.monotonic_ns() - t0


def start_pipe_reader(
    conn: Connection, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[tuple[str, dict[str, Any]] | None]
) -> threading.Thread:
    """Puts the coordinator's commands into ``inbox`` (then None: it went away), from a thread of its own.
    Not ``loop.add_reader``: uvloop makes the fd non-blocking, and a command bigger than the pipe's buffer
    (``drain``'s bitmaps after a long run on a busy machine) then failed half-read, as if the coordinator
    had gone, and a big result failed half-sent."""

    def read() -> None:
        while True:
            try:
                msg: tuple[str, dict[str, Any]] | None = conn.recv()
            except (EOFError, OSError):
                msg = None
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, msg)
            except RuntimeError:  # the loop is closed: the worker is done
                return
            if msg is None:
                return

    thread = threading.Thread(target=read, name="bench-pipe", daemon=True)
    thread.start()
    return thread


def _skip_sniffio_search() -> None:
    """httpcore tries ``import sniffio`` on every request; when it is not installed each try searches
    sys.path again (a fifth of a recovering worker's time). A None entry makes that import fail at once."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def raise_fd_limit(need: int = 0) -> int:
    """Sockets are file descriptors: lift the soft limit to the hard one and, where this process may (root,
    CAP_SYS_RESOURCE), the hard one to ``need``; children inherit both. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and need > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
    return soft


def worker_main(conn: Connection) -> None:
    """Entry point of a worker process (multiprocessing spawn)."""
    _skip_sniffio_search()
    raise_fd_limit()
    try:
        plan: WorkerPlan = conn.recv()
    except (EOFError, OSError) as exc:
        print(f"bench worker: no plan from the coordinator ({exc!r})", file=sys.stderr)
        return
    if plan.nice:
        # A reconnect storm's clients would otherwise take most of a small machine from the server and
        # the live pairs' worker, whose latency is the figure (on a real deployment they are elsewhere).
        with contextlib.suppress(OSError):
            os.nice(plan.nice)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
            asyncio.run(Worker(conn, plan).run())
        else:
            uvloop.run(Worker(conn, plan).run())
    except SystemExit:
        pass
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("failed", {"error": traceback.format_exc()}))
    finally:
        conn.close()
