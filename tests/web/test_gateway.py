"""The /ws gateway with real WebSocket clients against a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.client import Api, Socket
from tests.services.server import ThreadServer


async def test_two_users_chat_in_real_time(server: ThreadServer, alice: Api, bob: Api) -> None:
    a = await alice.socket(server.ws_url)
    b = await bob.socket(server.ws_url)
    assert a.ready["user"]["username"] == alice.username
    cid = (await alice.chat_with(bob.username))["chat_id"]
    created = await b.expect("chat")
    assert created["chat"]["chat_id"] == cid and created["chat"]["unread_count"] == 0
    ack = await a.send_text(cid, "hello bob", "c-1")
    assert ack["client_msg_id"] == "c-1" and ack["message"]["seq"] == 1 and ack["message"]["content"] == "hello bob"
    got = await b.expect("message")
    assert got["message"] == ack["message"]
    ack2 = await b.send_text(cid, "hi alice")
    assert (await a.expect("message"))["message"]["message_id"] == ack2["message"]["message_id"]
    # The sender's own socket gets the ack, never a copy of the message.
    assert await a.quiet("message") == []
    await a.close()
    await b.close()


async def test_three_devices_of_one_user(server: ThreadServer, alice: Api, bob: Api) -> None:
    """Every other device of the sender and of the recipient gets the message; the sender gets the ack."""
    cid = (await alice.chat_with(bob.username))["chat_id"]
    phone, laptop, tablet = [await alice.socket(server.ws_url) for _ in range(3)]
    bobs = await bob.socket(server.ws_url)
    ack = await phone.send_text(cid, "from my phone")
    for other in (laptop, tablet, bobs):
        assert (await other.expect("message"))["message"]["message_id"] == ack["message"]["message_id"]
    assert await phone.quiet("message") == []
    # REST sends reach every socket, the sender's too.
    r = await alice.post(f"/api/chats/{cid}/messages", json={"content": "from the API"})
    for s in (phone, laptop, tablet, bobs):
        assert (await s.expect("message"))["message"]["seq"] == r.json()["message"]["seq"]


async def test_retry_with_same_client_msg_id_acks_original(server: ThreadServer, alice: Api, bob: Api) -> None:
    cid = (await alice.chat_with(bob.username))["chat_id"]
    a = await alice.socket(server.ws_url)
    b = await bob.socket(server.ws_url)
    first = await a.send_text(cid, "once", "retry-1")
    again = await a.send_text(cid, "once", "retry-1")
    assert again["message"] == first["message"]
    assert len(await b.frames("message", 1)) == 1
    assert await b.quiet("message") == []  # the retry is not delivered again
    assert [m["seq"] for m in (await bob.history(cid))["messages"]] == [1]


async def test_twenty_concurrent_senders_one_chat(server: ThreadServer, api_factory: Callable[[], Api]) -> None:
    """Concurrent senders never share a seq; history has no gap or duplicate; each listener sees each
    message once and in seq order."""
    users = [await api_factory().signup() for _ in range(20)]
    listener = await api_factory().signup()
    chat = await users[0].chat_with(*[u.username for u in users[1:]], listener.username, title="busy")
    cid = chat["chat_id"]
    sockets = [await u.socket(server.ws_url) for u in users]
    watch = await listener.socket(server.ws_url)
    per_sender = 10

    async def burst(s: Socket) -> list[int]:
        cmids = [uuid.uuid4().hex for _ in range(per_sender)]
        for cmid in cmids:
            await s.send({"type": "send", "chat_id": cid, "content": "x", "client_msg_id": cmid})
        seqs = []
        for cmid in cmids:
            seqs.append((await s.expect("ack", timeout=20, client_msg_id=cmid))["message"]["seq"])
        return seqs

    results = await asyncio.gather(*(burst(s) for s in sockets))
    all_seqs = sorted(q for r in results for q in r)
    total = 20 * per_sender
    assert all_seqs == list(range(1, total + 1))
    for r in results:
        assert r == sorted(r)  # one socket's messages keep their order
    seen = [f["message"]["seq"] for f in await watch.frames("message", total, timeout=30)]
    assert seen == list(range(1, total + 1))
    history = await listener.all_messages(cid)
    assert [m["seq"] for m in history] == list(range(1, total + 1))
    assert len({m["message_id"] for m in history}) == total


async def test_frames_answered_at_once_wait_behind_one_that_awaits(server: ThreadServer, alice: Api, bob: Api) -> None:
    """A ping or a text send is answered in the protocol's own callback, but never ahead of an earlier
    frame that waits on the store (a file send): a socket's answers keep its frames' order."""
    cid = (await alice.chat_with(bob.username))["chat_id"]
    a = await alice.socket(server.ws_url)
    for round_ in range(20):
        await a.send({"type": "send", "chat_id": cid, "file_id": "no-such-file", "client_msg_id": f"f{round_}"})
        await a.send({"type": "ping"})
        await a.send({"type": "send", "chat_id": cid, "content": "after", "client_msg_id": f"t{round_}"})
        got: list[dict[str, object]] = []
        while len(got) < 3:
            frame = await a.recv()
            if frame["type"] not in ("presence", "chat"):
                got.append(frame)
        assert [(f["type"], f.get("client_msg_id")) for f in got] == [
            ("error", f"f{round_}"),
            ("pong", None),
            ("ack", f"t{round_}"),
        ]
    assert [m["content"] for m in (await alice.history(cid))["messages"]] == ["after"] * 20
    await a.close()


async def test_malformed_frames_keep_socket_open(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(max_message_chars=50)
    async with Api(server.url) as alice, Api(server.url) as bob, Api(server.url) as eve:
        for c in (alice, bob, eve):
            await c.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        s = await alice.socket(server.ws_url)
        bad: list[tuple[object, str]] = [
            ("not json", "bad_request"),
            ("[1, 2]", "bad_request"),
            ('"text"', "bad_request"),
            ({"no": "type"}, "bad_request"),
            ({"type": 7}, "bad_request"),
            ({"type": "fly"}, "bad_request"),
            ({"type": "send"}, "bad_request"),
            ({"type": "send", "chat_id": cid}, "bad_request"),
            ({"type": "send", "chat_id": cid, "content": 12}, "bad_request"),
            ({"type": "send", "chat_id": cid, "content": "   "}, "bad_request"),
            ({"type": "send", "chat_id": cid, "content": "x" * 51}, "too_large"),
            ({"type": "send", "chat_id": cid, "content": "x", "client_msg_id": 5}, "bad_request"),
            ({"type": "send", "chat_id": "nope", "content": "x"}, "not_found"),
            ({"type": "send", "chat_id": ["list"], "content": "x"}, "not_found"),
            ({"type": "read", "chat_id": cid, "seq": "one"}, "bad_request"),
            ({"type": "read", "chat_id": cid, "seq": -1}, "bad_request"),
            ({"type": "typing", "chat_id": "nope"}, "not_found"),
        ]
        for frame, code in bad:
            await s.send(frame)  # type: ignore[arg-type]
            err = await s.expect("error")
            assert err["code"] == code, (frame, err)
            assert err["detail"]
        await s.ws.send(b"\x00binary")
        assert (await s.expect("error"))["code"] == "bad_request"
        await s.send({"type": "send", "chat_id": cid, "content": "x" * 51, "client_msg_id": "big"})
        err = await s.expect("error")
        assert err["client_msg_id"] == "big" and err["code"] == "too_large"
        # still open and working
        await s.send({"type": "ping"})
        assert (await s.expect("pong"))["type"] == "pong"
        assert (await s.send_text(cid, "still here"))["message"]["seq"] == 1
        # a chat of others answers like a missing one
        other = (await bob.chat_with(eve.username))["chat_id"]
        await s.send({"type": "send", "chat_id": other, "content": "x"})
        assert (await s.expect("error"))["code"] == "not_found"
        assert (await bob.history(other))["messages"] == []


async def test_oversized_frame_closes_with_1009(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(ws_max_frame_bytes=4096)
    async with Api(server.url) as alice:
        await alice.signup()
        s = await alice.socket(server.ws_url)
        await s.send("x" * 10_000)
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await s.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_handshake_needs_session_and_allowed_origin(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(allowed_origins="https://app.example.com")
    async with Api(server.url) as alice:
        await alice.signup()
        with pytest.raises(InvalidStatus):
            await Socket.open(server.ws_url, None)
        with pytest.raises(InvalidStatus):
            await Socket.open(server.ws_url, "forged-token")
        with pytest.raises(InvalidStatus):
            await alice.socket(server.ws_url, headers={"Origin": "https://evil.example"})
        same = await alice.socket(server.ws_url, headers={"Origin": server.url})
        extra = await alice.socket(server.ws_url, headers={"Origin": "https://app.example.com"})
        assert same.ready["type"] == extra.ready["type"] == "ready"


async def test_cookie_authenticates_socket(server: ThreadServer) -> None:
    async with Api(server.url) as c:
        await c.signup()
        s = await Socket.open(server.ws_url, None, headers={"Cookie": f"session_id={c.token}"})
        assert s.ready["user"]["username"] == c.username


async def test_logout_closes_open_sockets(server: ThreadServer, alice: Api) -> None:
    s1 = await alice.socket(server.ws_url)
    s2 = await alice.socket(server.ws_url)
    assert (await alice.post("/api/auth/logout")).status_code == 204
    for s in (s1, s2):
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await s.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_expired_session_closes_socket(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(session_ttl=1.0)
    async with Api(server.url) as c:
        await c.signup()
        s = await c.socket(server.ws_url)
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await s.recv(timeout=4)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_typing_read_and_presence(server: ThreadServer, alice: Api, bob: Api) -> None:
    cid = (await alice.chat_with(bob.username))["chat_id"]
    b = await bob.socket(server.ws_url)
    a = await alice.socket(server.ws_url)
    online = await b.expect("presence", user_id=alice.user["user_id"])
    assert online["online"] is True
    inbox = (await bob.get("/api/chats")).json()["chats"]
    assert {m["username"]: m["online"] for m in inbox[0]["members"]} == {alice.username: True, bob.username: True}
    await a.send({"type": "typing", "chat_id": cid})
    typing = await b.expect("typing")
    assert typing == {"type": "typing", "chat_id": cid, "user_id": alice.user["user_id"]}
    await a.send_text(cid, "one")
    await a.send_text(cid, "two")
    await b.send({"type": "read", "chat_id": cid, "seq": 2})
    read = await a.expect("read")
    assert read == {"type": "read", "chat_id": cid, "user_id": bob.user["user_id"], "seq": 2}
    assert (await bob.get("/api/chats")).json()["chats"][0]["unread_count"] == 0
    await a.close()
    offline = await b.expect("presence", user_id=alice.user["user_id"])
    assert offline["online"] is False


async def test_socket_rate_limit_is_an_error_frame(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server(burst_rate=1, burst_size=2)
    async with Api(server.url) as a, Api(server.url) as b:
        await a.signup()
        await b.signup()
        cid = (await a.chat_with(b.username))["chat_id"]
        s = await a.socket(server.ws_url)
        await s.send_text(cid, "1", "r1")
        await s.send_text(cid, "2", "r2")
        await s.send({"type": "send", "chat_id": cid, "content": "3", "client_msg_id": "r3"})
        err = await s.expect("error", client_msg_id="r3")
        assert err["code"] == "rate_limited" and err["retry_after"] > 0
        assert [m["seq"] for m in (await a.history(cid))["messages"]] == [1, 2]


async def test_new_chat_reports_who_is_online(server: ThreadServer, alice: Api, bob: Api) -> None:
    """The created chat, in the REST answer and in the chat frame, says which members are online."""
    b = await bob.socket(server.ws_url)
    r = await alice.post("/api/chats", json={"members": [bob.username]})
    online = {m["username"]: m["online"] for m in r.json()["chat"]["members"]}
    assert online == {alice.username: False, bob.username: True}
    frame = await b.expect("chat")
    assert {m["username"]: m["online"] for m in frame["chat"]["members"]} == online


async def test_a_socket_that_stops_reading_is_closed_1013_and_others_go_on(
    make_server: Callable[..., ThreadServer],
) -> None:
    """A client that stops reading fills its TCP window, then the server's buffers (the transport
    pauses), then its bounded queue of frames: the server closes it with 1013 instead of holding more,
    and the sender and the server carry on."""
    import socket as socketlib

    from websockets.client import ClientProtocol
    from websockets.frames import Close, Frame, Opcode
    from websockets.protocol import State
    from websockets.uri import parse_uri

    server = make_server(ws_send_queue=16, free_daily_messages="unlimited")
    async with Api(server.url) as alice, Api(server.url) as bob:
        await alice.signup()
        await bob.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        # The slow client: websockets' sans-I/O protocol over a plain socket with a small receive buffer,
        # which after the handshake nobody reads.
        loop = asyncio.get_running_loop()
        proto = ClientProtocol(parse_uri(server.ws_url))
        request = proto.connect()
        request.headers["Authorization"] = f"Bearer {bob.token}"
        proto.send_request(request)
        raw = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_STREAM)
        raw.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
        raw.setblocking(False)
        try:
            host, port = server.url.removeprefix("http://").split(":")
            await loop.sock_connect(raw, (host, int(port)))
            await loop.sock_sendall(raw, b"".join(proto.data_to_send()))
            while proto.state is not State.OPEN:
                proto.receive_data(await asyncio.wait_for(loop.sock_recv(raw, 4096), timeout=10))
            sender = await alice.socket(server.ws_url)
            filler = "x" * 4000
            acked = 0
            for batch in range(250):  # 2,000 messages of 4 KB: more than the buffers on the way hold
                for i in range(8):  # few at a time: the sender reads its acks (it is no slow client)
                    frame = {"type": "send", "chat_id": cid, "content": filler, "client_msg_id": f"{batch}-{i}"}
                    await sender.send(frame)
                acked += len(await sender.frames("ack", 8, timeout=30))
            assert acked == 2000
            # Reading again drains what the buffers held; then comes the close frame the server sent.
            close: Close | None = None
            texts = 0
            for _ in range(100_000):
                data = await asyncio.wait_for(loop.sock_recv(raw, 65536), timeout=10)
                if not data:
                    break
                proto.receive_data(data)
                for event in proto.events_received():
                    if not isinstance(event, Frame):  # the handshake's response
                        continue
                    if event.opcode is Opcode.TEXT:
                        texts += 1
                    elif event.opcode is Opcode.CLOSE:
                        close = Close.parse(event.data)
                if close is not None:
                    break
            assert close is not None and close.code == 1013
            assert texts < 2000  # it was cut off, not given everything
        finally:
            raw.close()
        # The node is fine: a new socket of the slow user gets new messages.
        again = await bob.socket(server.ws_url)
        ack = await sender.send_text(cid, "still here")
        assert (await again.expect("message"))["message"]["seq"] == ack["message"]["seq"]
        await again.close()
        await sender.close()


async def test_metrics_count_sockets_and_open_files(server: ThreadServer, alice: Api, bob: Api) -> None:
    """``/metrics`` counts open sockets, the open files against the limit that new sockets need, the
    SQLite WAL's size, and the loop's lag and the collector's pauses."""
    from tests.services.cluster import parse_metrics

    sockets = [await alice.socket(server.ws_url), await bob.socket(server.ws_url)]
    m = parse_metrics((await alice.get("/metrics")).text)
    assert m["stratochat_connections"] == 2
    assert m["stratochat_open_files"] >= 2 and m["stratochat_open_files_limit"] >= m["stratochat_open_files"]
    # The sign-ups are in the SQLite WAL; nothing here is steady enough to need a rewind.
    assert m["stratochat_store_wal_bytes"] > 0 and m["stratochat_store_rewinds_total"] == 0
    # The loop's lag and the collector's pauses as Prometheus histograms (the last series: generation 2).
    assert m["stratochat_event_loop_lag_seconds_count"] >= 1
    assert m["stratochat_event_loop_lag_seconds_sum"] >= 0
    assert "stratochat_gc_pause_seconds_count" in m
    text = (await alice.get("/metrics")).text
    assert 'stratochat_event_loop_lag_seconds_bucket{node="' in text and 'le="+Inf"} ' in text
    assert 'stratochat_gc_pause_seconds_bucket{node="' in text and 'generation="0",le="0.001"}' in text
    for s in sockets:
        await s.close()


async def test_the_gateway_works_on_a_plain_uvicorn_protocol(tmp_path: Path) -> None:
    """Served by uvicorn's own WebSocket protocol (``uvicorn --factory stratochat.app:app_from_env``, no
    direct-write extension) the gateway falls back to ASGI sends: messages, acks and a 4401 close all work."""
    from stratochat.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path / "data", burst_rate=0)  # type: ignore[call-arg]
    server = ThreadServer(settings, server_options={"ws": "websockets-sansio"}).start()
    try:
        async with Api(server.url) as alice, Api(server.url) as bob:
            await alice.signup()
            await bob.signup()
            cid = (await alice.chat_with(bob.username))["chat_id"]
            a, b = await alice.socket(server.ws_url), await bob.socket(server.ws_url)
            ack = await a.send_text(cid, "over plain ASGI", "p-1")
            assert (await b.expect("message"))["message"] == ack["message"]
            assert await a.quiet("message") == []
            assert (await bob.post("/api/auth/logout")).status_code == 204
            with pytest.raises(ConnectionClosed) as info:
                for _ in range(10):
                    await b.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4401
            await a.close()
    finally:
        server.stop()


async def test_a_closed_socket_leaves_no_reference_cycles(server: ThreadServer, alice: Api, bob: Api) -> None:
    """A socket's protocol, writer and gateway state are freed by reference counting when it closes: left
    in reference cycles, a reconnect storm's thousands of dropped sockets became 100 ms garbage
    collections that stopped the node. The server runs in this process, so its garbage is visible here."""
    import gc

    server_types = ("DirectWebSocketProtocol", "DirectWriter", "SocketConnection", "HttpToolsProtocol", "TCPTransport")
    cid = (await alice.chat_with(bob.username))["chat_id"]
    listener = await bob.socket(server.ws_url)
    gc.collect()
    gc.disable()
    try:
        sockets = [await alice.socket(server.ws_url) for _ in range(10)]
        await sockets[0].send_text(cid, "hello")
        for s in sockets:
            await s.close()
        await asyncio.sleep(0.3)  # the server's side of each close runs to its end
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if type(o).__name__ in server_types]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
    assert (await listener.expect("message"))["message"]["content"] == "hello"
    await listener.close()


async def test_a_crowd_of_closes_is_answered_a_few_per_loop_turn(server: ThreadServer, alice: Api, bob: Api) -> None:
    """When many clients close at once, their closing handshakes are answered a few per loop turn
    (``CLOSINGS_PER_TURN``), each with its close frame, while the sockets still open are served between
    them. The server's loop is kept busy while the closes arrive, so they are all ready in one turn."""
    import gc
    import time

    from stratochat.web import wsprotocol
    from tests.services.cluster import parse_metrics

    cid = (await alice.chat_with(bob.username))["chat_id"]
    listener = await bob.socket(server.ws_url)
    crowd = [await alice.socket(server.ws_url, compression=None) for _ in range(3 * wsprotocol.CLOSINGS_PER_TURN)]
    protocols = [o for o in gc.get_objects() if type(o) is wsprotocol.DirectWebSocketProtocol and not o.disconnected]
    loop = protocols[0].loop
    del protocols
    loop.call_soon_threadsafe(time.sleep, 0.3)  # the server's loop is busy while the closes arrive
    await asyncio.sleep(0.05)
    await asyncio.gather(*(s.close() for s in crowd))
    assert [s.ws.close_code for s in crowd] == [1000] * len(crowd)  # each handshake answered by the server
    assert wsprotocol.closing_pacer(loop).most == wsprotocol.CLOSINGS_PER_TURN
    sender = await alice.socket(server.ws_url)
    await sender.send_text(cid, "after the crowd")
    assert (await listener.expect("message"))["message"]["content"] == "after the crowd"
    for _ in range(50):
        if parse_metrics((await alice.get("/metrics")).text)["stratochat_connections"] == 2:
            break
        await asyncio.sleep(0.05)
    assert parse_metrics((await alice.get("/metrics")).text)["stratochat_connections"] == 2
    await sender.close()
    await listener.close()


async def test_an_open_socket_keeps_nothing_of_its_handshake(server: ThreadServer, alice: Api, bob: Api) -> None:
    """Once accepted, a socket's protocol holds neither the handshake's request and response nor the
    extension offers (each header is objects the collector walks, for every open socket); the
    negotiated compression still works. The server runs in this process, so its objects are visible."""
    import gc

    from stratochat.web.wsprotocol import DirectWebSocketProtocol

    cid = (await alice.chat_with(bob.username))["chat_id"]
    listener = await bob.socket(server.ws_url, compression="deflate")
    sender = await alice.socket(server.ws_url, compression=None)
    await sender.send_text(cid, "x" * 3_000)
    assert (await listener.expect("message"))["message"]["content"] == "x" * 3_000
    protocols = [o for o in gc.get_objects() if type(o) is DirectWebSocketProtocol and not o.disconnected]
    assert len(protocols) == 2
    for p in protocols:
        assert p.request is None and p.response is None and not p.conn.available_extensions
    assert sorted(bool(p.conn.extensions) for p in protocols) == [False, True]  # bob's socket deflates
    await listener.close()
    await sender.close()


async def test_a_frame_taken_at_once_logs_with_its_sockets_request_id(
    server: ThreadServer, alice: Api, bob: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames answered in the protocol's callback (outside the socket's task) still log under the
    request id of the socket's handshake."""
    import io
    import logging

    from stratochat.core.messages import MessageService
    from stratochat.logs import JsonFormatter

    cid = (await alice.chat_with(bob.username))["chat_id"]
    sock = await alice.socket(server.ws_url, headers={"X-Request-Id": "sock-rid-42"})
    await sock.send_text(cid, "fine")  # the chat's members are cached: the next send takes the direct path
    original = MessageService.submit

    def failing(self: MessageService, user: Any, chat_id: object, content: object, *a: Any, **kw: Any) -> Any:
        if content == "boom":
            raise RuntimeError("boom")
        return original(self, user, chat_id, content, *a, **kw)

    monkeypatch.setattr(MessageService, "submit", failing)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("stratochat.gateway")
    logger.addHandler(handler)
    try:
        await sock.send({"type": "send", "chat_id": cid, "content": "boom", "client_msg_id": "c-boom"})
        err = await sock.expect("error")
    finally:
        logger.removeHandler(handler)
    assert err["code"] == "internal" and err["client_msg_id"] == "c-boom"
    (line,) = [json.loads(x) for x in out.getvalue().splitlines() if "frame send failed" in x]
    assert line["request_id"] == "sock-rid-42"
    await sock.close()


def test_our_text_frame_headers_are_the_ones_websockets_writes() -> None:
    from websockets.frames import Frame, Opcode

    from stratochat.web.wsprotocol import text_frame_header

    for n in (0, 1, 125, 126, 127, 65_535, 65_536, 70_000):
        payload = b"x" * n
        assert text_frame_header(n) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_frames_of_every_length_class_arrive_whole(
    make_server: Callable[..., ThreadServer], compression: str | None
) -> None:
    """Payloads under 126 bytes, up to 64 KiB and beyond (7-, 16- and 64-bit lengths), with and without
    permessage-deflate (with it, websockets frames them; without, the gateway's writer does)."""
    server = make_server(max_message_chars=30_000)
    async with Api(server.url) as alice, Api(server.url) as bob:
        await alice.signup()
        await bob.signup()
        a = await alice.socket(server.ws_url, compression=compression)
        b = await bob.socket(server.ws_url, compression=compression)
        assert bool(a.ws.protocol.extensions) == (compression is not None)
        cid = (await alice.chat_with(bob.username))["chat_id"]
        await b.expect("chat")
        for i, content in enumerate(["hi", "é" * 40, "x" * 2_000, "😀" * 20_000]):
            ack = await a.send_text(cid, content, f"len-{i}")
            assert ack["message"]["content"] == content
            assert (await b.expect("message"))["message"]["content"] == content
        await a.close()
        await b.close()


def _client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    from websockets.frames import Frame, Opcode

    return Frame(Opcode(opcode), payload, fin=fin).serialize(mask=True, extensions=[])


async def test_text_frames_cut_anywhere_arrive_whole_and_in_order(server: ThreadServer, alice: Api, bob: Api) -> None:
    """Frames written back to back and cut at random places (inside a header, a mask, a payload),
    with a control frame, a fragmented message and a 16-bit length among them: every send is
    acknowledged in order, every ping answered, nothing lost or doubled. The server takes whole text
    frames itself and leaves the rest to websockets, so the cuts test where one hands over to the other."""
    import random

    cid = (await alice.chat_with(bob.username))["chat_id"]
    s = await alice.socket(server.ws_url, compression=None)  # no extension: the fast path
    stream = b""
    expected: list[tuple[str, str | None]] = []
    for i in range(40):
        cmid = f"cut-{i}"
        body = json.dumps({"type": "send", "chat_id": cid, "content": f"m{i} " + "y" * (i * 11), "client_msg_id": cmid})
        if i % 9 == 4:  # a fragmented message: three frames
            raw = body.encode()
            stream += _client_frame(1, raw[:5], fin=False) + _client_frame(0, raw[5:20], fin=False)
            stream += _client_frame(0, raw[20:])
        else:
            stream += _client_frame(1, body.encode())
        expected.append(("ack", cmid))
        if i % 7 == 3:
            stream += _client_frame(9, b"keepalive")  # a protocol ping: websockets answers it
        if i % 5 == 2:
            stream += _client_frame(1, b'{"type":"ping"}')
            expected.append(("pong", None))
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(stream)), 60))
    transport = s.ws.transport
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        transport.write(stream[a:b])
        await asyncio.sleep(0.002)  # one TCP segment each, mostly
    got: list[tuple[str, str | None]] = []
    while len(got) < len(expected):
        frame = await s.recv()
        if frame["type"] in ("ack", "pong", "error"):  # not presence, chat or message events
            got.append((frame["type"], frame.get("client_msg_id")))
    # A ping is answered at once, an ack after its commit: only the acks' order is the socket's.
    assert [g for g in got if g[0] != "pong"] == [e for e in expected if e[0] != "pong"]
    assert sorted(got) == sorted(expected)
    seqs = [m["seq"] for m in (await alice.history(cid, limit=100))["messages"]]
    assert seqs == list(range(1, 41))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x81\x05hello", 1002),  # a client frame without a mask
        (b"\xc1\x85" + bytes(4) + b"hello", 1002),  # a reserved bit, no extension agreed
        (b"\x81\x82" + bytes(4) + b"\xc3\x28", 1007),  # a whole frame of invalid UTF-8
    ],
)
async def test_a_bad_frame_closes_the_socket_with_its_code(
    server: ThreadServer, alice: Api, raw: bytes, code: int
) -> None:
    s = await alice.socket(server.ws_url, compression=None)  # no extension: the fast path
    s.ws.transport.write(raw)
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(10):
            await s.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == code


async def test_a_payload_that_arrives_after_its_header_is_not_taken_for_a_frame(
    server: ThreadServer, alice: Api, bob: Api
) -> None:
    """A frame's header and mask in one TCP segment, its payload in the next: websockets holds the
    half frame, so the payload must go to it, even when its first masked bytes look like a frame's."""
    from websockets.utils import apply_mask

    cid = (await alice.chat_with(bob.username))["chat_id"]
    s = await alice.socket(server.ws_url, compression=None)  # no extension: the fast path
    payload = json.dumps({"type": "send", "chat_id": cid, "content": "late", "client_msg_id": "late"}).encode()
    assert len(payload) < 126
    # Chosen so that the masked payload starts 0x81 0x85: a whole 5-byte text frame, read as a header.
    mask = bytes([0x81 ^ payload[0], 0x85 ^ payload[1], 0x5A, 0xA5])
    s.ws.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask)
    await asyncio.sleep(0.05)
    s.ws.transport.write(apply_mask(payload, mask))
    assert (await s.expect("ack"))["client_msg_id"] == "late"
