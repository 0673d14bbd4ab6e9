"""Durability and recovery against a real server process: kill -9, restart, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.client import Api, Socket
from tests.services.server import ServerProcess


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"STRATOCHAT_DATA_DIR": str(tmp_path / "data"), "STRATOCHAT_BURST_RATE": "0"}
    proc = ServerProcess(env, log_path=tmp_path / "server.log").start()
    try:
        yield proc
    finally:
        proc.stop()


async def recover(api: Api, have: dict[str, int]) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """What a reconnecting client does: compare last_seq in the inbox, then page with after=."""
    got: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for chat in (await api.get("/api/chats")).json()["chats"]:
        cid = chat["chat_id"]
        if chat["last_seq"] > have.get(cid, 0):
            got[cid] = await api.all_messages(cid, after=have.get(cid, 0))
    return got


async def test_offline_client_recovers_everything_once_in_order(node: ServerProcess) -> None:
    """Bob goes offline, Alice sends in two chats, Bob comes back and recovers every message once."""
    async with Api(node.url) as alice, Api(node.url) as bob, Api(node.url) as carol:
        for c in (alice, bob, carol):
            await c.signup()
        direct = (await alice.chat_with(bob.username))["chat_id"]
        group = (await alice.chat_with(bob.username, carol.username, title="g"))["chat_id"]
        b = await bob.socket(node.ws_url)
        a = await alice.socket(node.ws_url)
        await a.send_text(direct, "before")
        seen = {direct: (await b.expect("message"))["message"]["seq"]}
        await b.close()
        sent = {direct: [], group: []}  # type: ignore[var-annotated]
        for i in range(30):
            cid = direct if i % 3 else group
            sent[cid].append((await a.send_text(cid, f"while away {i}"))["message"]["message_id"])
        b = await bob.socket(node.ws_url)
        live_after_ready = await a.send_text(direct, "after reconnect")
        recovered = await recover(bob, seen)
        live = await b.expect("message")
        assert live["message"]["message_id"] == live_after_ready["message"]["message_id"]
        # Merge as a client does: by seq, dropping what it already has.
        merged: dict[str, dict[int, str]] = {}
        for cid, msgs in recovered.items():
            for m in msgs:
                merged.setdefault(cid, {})[m["seq"]] = m["message_id"]
        merged[direct][live["message"]["seq"]] = live["message"]["message_id"]
        assert [merged[group][s] for s in sorted(merged[group])] == sent[group]
        direct_ids = [merged[direct][s] for s in sorted(merged[direct])]
        assert direct_ids == [*sent[direct], live_after_ready["message"]["message_id"]]
        assert sorted(merged[direct]) == list(range(2, 2 + len(direct_ids)))


async def test_kill_9_loses_nothing_acknowledged(node: ServerProcess) -> None:
    """Every acknowledged message survives kill -9 of the server mid-burst; retries of the unacked
    ones after the restart are stored exactly once."""
    async with Api(node.url) as alice, Api(node.url) as bob:
        await alice.signup()
        await bob.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        s = await alice.socket(node.ws_url)
        cmids = [uuid.uuid4().hex for _ in range(400)]
        acked: dict[str, int] = {}

        async def pump() -> None:
            for cmid in cmids:
                await s.send({"type": "send", "chat_id": cid, "content": cmid, "client_msg_id": cmid})
                await asyncio.sleep(0)

        async def collect() -> None:
            with contextlib.suppress(ConnectionClosed, TimeoutError, asyncio.TimeoutError):
                while True:
                    f = await s.recv(timeout=10)
                    if f["type"] == "ack":
                        acked[f["client_msg_id"]] = f["message"]["seq"]
                        if len(acked) == 50:
                            node.kill(signal.SIGKILL)

        await asyncio.gather(collect(), pump(), return_exceptions=True)
        assert len(acked) >= 50
        node.start()
        history = await alice.all_messages(cid)
        stored = {m["client_msg_id"]: m["seq"] for m in history}
        for cmid, seq in acked.items():
            assert stored.get(cmid) == seq, "an acknowledged message was lost or changed"
        assert [m["seq"] for m in history] == list(range(1, len(history) + 1))
        # The client retries whatever was not acknowledged: each lands once.
        s = await alice.socket(node.ws_url)
        for cmid in cmids:
            if cmid not in acked:
                await s.send_text(cid, cmid, cmid)
        history = await alice.all_messages(cid)
        assert sorted(m["client_msg_id"] for m in history) == sorted(cmids)
        assert [m["seq"] for m in history] == list(range(1, len(cmids) + 1))


async def test_graceful_restart_keeps_history_and_sessions(node: ServerProcess) -> None:
    """SIGTERM closes sockets with 1012, exits cleanly, and after a restart history and sessions remain."""
    async with Api(node.url) as alice, Api(node.url) as bob:
        await alice.signup()
        await bob.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        s = await alice.socket(node.ws_url)
        for i in range(5):
            await s.send_text(cid, f"m{i}")
        code = node.kill(signal.SIGTERM, timeout=30)
        # uvicorn re-raises the signal once its graceful shutdown has finished.
        assert code in (0, -signal.SIGTERM)
        assert node.log_path is not None and b"Application shutdown complete" in node.log_path.read_bytes()
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(10):
                await s.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code in (1001, 1012)
        node.start()
        assert [m["content"] for m in await bob.all_messages(cid)] == [f"m{i}" for i in range(5)]
        s2 = await Socket.open(node.ws_url, alice.token)
        assert (await s2.send_text(cid, "after restart"))["message"]["seq"] == 6
