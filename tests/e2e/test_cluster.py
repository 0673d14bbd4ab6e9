"""Several nodes behind nginx, one Redis (single node or a three-primary Redis Cluster with sharded
pub/sub): users on different nodes chat; a node dies (kill -9) or is stopped (SIGTERM), or Redis restarts,
mid-conversation, and every client still ends with every message exactly once and in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.client import Api, Socket
from tests.e2e.chatters import Chatter, assert_exactly_once, assert_live_complete
from tests.services.cluster import PRESENCE_TTL_S, Deployment, node_env, parse_metrics, wait_ready
from tests.services.redis import RedisServer
from tests.services.server import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.slow


async def users(base_url: str, n: int) -> list[Api]:
    return [await Api(base_url).signup() for _ in range(n)]


async def join(d: Deployment, api: Api) -> tuple[Chatter, int]:
    """Connect through the balancer; return the chatter and the index of the node it landed on."""
    before = await d.connections()
    chatter = Chatter(api, d.lb.ws_url)
    await chatter.connect()
    return chatter, await d.node_of_new_socket(before)


async def histories(api: Api, chat_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    return {cid: await api.all_messages(cid) for cid in chat_ids}


async def settle(api: Api, members: dict[Chatter, list[str]], timeout: float = 30) -> dict[str, Any]:
    """Wait until every chatter has every stored message of its chats; return the chats' history."""
    chat_ids = sorted({cid for cids in members.values() for cid in cids})
    deadline = time.monotonic() + timeout
    while True:
        history = await histories(api, chat_ids)
        want = {cid: {m["seq"] for m in msgs} for cid, msgs in history.items()}
        if all(set(c.have.get(cid, {})) == want[cid] for c, cids in members.items() for cid in cids):
            return history
        if time.monotonic() > deadline:
            return history  # the assertions that follow say who misses what
        await asyncio.sleep(0.1)


def check_all(
    history: dict[str, Any], members: dict[Chatter, list[str]], live: Callable[[Chatter], bool] = lambda c: True
) -> None:
    """Exactly once for everyone; and complete live delivery for the chatters ``live`` selects."""
    for c, cids in members.items():
        mine = {cid: history[cid] for cid in cids}
        assert_exactly_once(c, mine)
        if live(c):
            assert_live_complete(c, mine, {})


def assert_history_clean(history: dict[str, list[dict[str, Any]]], sent: dict[str, list[str]]) -> None:
    """Seqs 1..n with no gap, and each sent content stored exactly once (retries did not duplicate)."""
    for cid, msgs in history.items():
        assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
        contents = [m["content"] for m in msgs]
        assert sorted(contents) == sorted(sent[cid]), f"chat {cid}: lost or duplicated messages"


async def close_all(chatters: list[Chatter], apis: list[Api]) -> None:
    for c in chatters:
        await c.close()
    for a in apis:
        await a.aclose()


async def test_users_on_different_nodes_chat(cluster: Deployment) -> None:
    """Clients entering through nginx land on different nodes; group messages, typing, read markers and
    presence reach members on every node; a node receives no traffic for users it does not hold."""
    d = cluster
    alice, bob, carol, dave = apis = await users(d.lb.url, 4)
    group = (await alice.chat_with(bob.username, carol.username, dave.username, title="team"))["chat_id"]
    direct = (await alice.chat_with(bob.username))["chat_id"]
    chatters, placed = [], []
    for api in apis:
        c, node = await join(d, api)
        chatters.append(c)
        placed.append(node)
    ca, cb, cc, cd = chatters
    try:
        # Round robin (a node restarted by an earlier test may sit out nginx's fail_timeout).
        assert len(set(placed)) >= 2, f"nginx should spread the sockets over the nodes: {placed}"
        # Presence crosses nodes: Alice, first in, sees the others come online.
        await wait_for(
            lambda: {f["user_id"] for f in ca.log.frames if f["type"] == "presence" and f["online"]}
            >= {bob.user["user_id"], carol.user["user_id"], dave.user["user_id"]},
            10,
            "presence",
        )
        sent: dict[str, list[str]] = {group: [], direct: []}
        for i in range(5):
            for c in (ca, cb, cc):
                text = f"{c.api.username} {i}"
                await c.send(group, text)
                sent[group].append(text)
        await cc.sock.send({"type": "typing", "chat_id": group})  # type: ignore[union-attr]
        for c in (ca, cb, cd):
            await wait_for(
                lambda c=c: any(f["type"] == "typing" and f["user_id"] == carol.user["user_id"] for f in c.log.frames),
                10,
                "typing across nodes",
            )
        await cd.sock.send({"type": "read", "chat_id": group, "seq": 15})  # type: ignore[union-attr]
        for c in (ca, cb, cc):
            await wait_for(
                lambda c=c: any(
                    f["type"] == "read" and f["user_id"] == dave.user["user_id"] and f["seq"] == 15
                    for f in c.log.frames
                ),
                10,
                "read marker across nodes",
            )

        # Direct chat: only Alice's and Bob's nodes may hear of it.
        quiet = [i for i in range(3) if i not in (placed[0], placed[1])]
        before = {i: await d.metrics(i) for i in range(3)}
        for i in range(10):
            for c in (ca, cb):
                text = f"{c.api.username} direct {i}"
                await c.send(direct, text)
                sent[direct].append(text)
        await ca.sock.send({"type": "typing", "chat_id": direct})  # type: ignore[union-attr]
        await wait_for(
            lambda: any(f["type"] == "typing" and f.get("chat_id") == direct for f in cb.log.frames), 10, "typing"
        )
        members = {ca: [group, direct], cb: [group, direct], cc: [group], cd: [group]}
        history = await settle(alice, members)
        assert_history_clean(history, sent)
        check_all(history, members)
        after = {i: await d.metrics(i) for i in range(3)}
        if placed[0] != placed[1]:
            # Bob's node received Alice's direct messages through Redis.
            assert (
                after[placed[1]]["stratochat_hub_broker_in_total"]
                >= before[placed[1]]["stratochat_hub_broker_in_total"] + 10
            )
        for i in quiet:
            # Not one payload of the direct chat reached the quiet node, not even from Redis.
            assert after[i]["stratochat_broker_received_total"] == before[i]["stratochat_broker_received_total"]
            assert after[i]["stratochat_hub_broker_in_total"] == before[i]["stratochat_hub_broker_in_total"]
        for i in range(3):
            key = "stratochat_hub_broker_in_dropped_total"
            assert after[i][key] == before[i][key]  # nothing arrived for a user the node does not hold
        writes = sum(
            after[i]["stratochat_store_writes_total"] - before[i]["stratochat_store_writes_total"] for i in range(3)
        )
        assert writes >= 20  # the store's group-commit counters are exported too
    finally:
        await close_all(chatters, apis)


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.05)


async def converse(
    senders: list[Chatter],
    chats: list[str],
    per_sender: int,
    disrupt_after: int,
    disrupt: Callable[[], Any],
    progress: dict[str, int] | None = None,
    after: int = 6,
) -> dict[str, list[str]]:
    """The senders talk concurrently, each alternating over ``chats``. Once the first has ``disrupt_after``
    acks, ``disrupt()`` runs in a thread while they go on to ``per_sender`` messages; when it has finished
    each sends ``after`` more (so they also talk after the disruption, from wherever they reconnected), and
    a last one per chat, which closes any gap the disruption left."""
    sent: dict[str, list[str]] = {cid: [] for cid in chats}
    started = asyncio.Event()
    disruption: asyncio.Future[Any] | None = None

    async def say(c: Chatter, i: int, text: str) -> None:
        cid = chats[i % len(chats)]
        sent[cid].append(text)
        await c.send(cid, text)
        if progress is not None:
            progress["acked"] += 1

    async def talk(c: Chatter, first: bool) -> None:
        nonlocal disruption
        for i in range(per_sender):
            await say(c, i, f"{c.api.username} {i}")
            if first and i + 1 == disrupt_after:
                disruption = asyncio.ensure_future(asyncio.to_thread(disrupt))
                started.set()
            elif not first and i + 1 == disrupt_after:
                await asyncio.wait_for(started.wait(), 30)

    await asyncio.gather(*(talk(c, i == 0) for i, c in enumerate(senders)))
    assert disruption is not None
    await disruption
    await asyncio.gather(*(say(c, i, f"{c.api.username} after {i}") for c in senders for i in range(after)))
    for c in senders:
        for i in range(len(chats)):
            await say(c, i, f"{c.api.username} fin {i}")
    return sent


async def test_redis_restart_mid_conversation(cluster: Deployment) -> None:
    """Redis restarts mid-conversation: /readyz goes red, then green; no socket drops, and every client
    still gets every message live, exactly once and in order (the nodes resync from the store)."""
    d = cluster
    apis = await users(d.lb.url, 3)
    alice, bob, carol = apis
    group = (await alice.chat_with(bob.username, carol.username, title="g"))["chat_id"]
    direct = (await alice.chat_with(bob.username))["chat_id"]
    chatters, placed = [], []
    for api in apis:
        c, node = await join(d, api)
        chatters.append(c)
        placed.append(node)
    ca, cb, cc = chatters
    readiness: dict[str, float] = {}
    progress = {"acked": 0}

    def restart_redis() -> None:
        d.redis.stop()
        t0 = time.monotonic()
        readiness["red"] = poll_ready(d.nodes[0].url, want=False, timeout=15) - t0
        # Stay down until a few messages were sent meanwhile: they cannot cross nodes now.
        mark = progress["acked"]
        deadline = time.monotonic() + 20
        while progress["acked"] < mark + 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        d.redis.start()
        t1 = time.monotonic()
        readiness["green"] = poll_ready(d.nodes[0].url, want=True, timeout=30) - t1
        for n in d.nodes[1:]:
            poll_ready(n.url, want=True, timeout=30)

    try:
        assert len(set(placed)) >= 2
        gaps_before = await total(d, "stratochat_hub_gaps_filled_total")
        sent = await converse([ca, cb], [group, direct], 20, 6, restart_redis, progress)
        members = {ca: [group, direct], cb: [group, direct], cc: [group]}
        history = await settle(alice, members)
        assert_history_clean(history, sent)
        check_all(history, members)
        assert readiness["red"] < 15 and readiness["green"] < 30
        assert (
            await total(d, "stratochat_hub_gaps_filled_total") > gaps_before
        )  # messages were lost in transit and recovered from the store
    finally:
        await close_all(chatters, apis)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_node_dies_mid_conversation(sig: signal.Signals, cluster: Deployment) -> None:
    """A node is killed (-9) or stopped (SIGTERM) mid-conversation: its clients reconnect through nginx to
    another node and recover everything exactly once; clients elsewhere see everything live, once; a
    stopped node closes its sockets with 1012/1001 and exits within 30 s; a dead node's users go offline."""
    d = cluster
    apis = await users(d.lb.url, 5)
    alice, bob, carol, dave, lurker = apis
    group = (await alice.chat_with(*(a.username for a in apis[1:]), title="all"))["chat_id"]
    direct = (await alice.chat_with(bob.username))["chat_id"]
    chatters, placed = [], []
    for api in (alice, bob, carol, dave):
        c, node = await join(d, api)
        chatters.append(c)
        placed.append(node)
    victim = placed[0]  # Alice's node
    # The lurker sits on the victim node and never reconnects: the others must see it go offline.
    lurk = await Socket.open(d.nodes[victim].ws_url, lurker.token)
    # Read its frames, or the client stops reading once its queue is full and never sees the close.
    lurking = asyncio.create_task(read_until_closed(lurk))
    ca, cb, cc, cd = chatters
    try:
        await wait_for_online(bob, group, lurker.user["user_id"], True)

        def disrupt() -> None:
            t0 = time.monotonic()
            code = d.nodes[victim].kill(sig, timeout=30)
            if sig == signal.SIGTERM:
                assert code in (0, -signal.SIGTERM), code
                assert time.monotonic() - t0 < 30

        sent = await converse([ca, cb], [group, direct], 24, 8, disrupt)
        members = {ca: [group, direct], cb: [group, direct], cc: [group], cd: [group]}
        history = await settle(alice, members)
        assert_history_clean(history, sent)
        check_all(history, members, live=lambda c: placed[chatters.index(c)] != victim)
        for c, node in zip(chatters, placed, strict=True):
            if node == victim:
                assert c.reconnects >= 1
                if sig == signal.SIGTERM:
                    assert c.logs[0].close_code in (1001, 1012), c.logs[0].close_code
        # Presence survives the node: the lurker's entry expires; it is not online forever.
        await wait_for_online(bob, group, lurker.user["user_id"], False, timeout=PRESENCE_TTL_S + 10)
    finally:
        lurking.cancel()
        await lurk.ws.close()
        await close_all(chatters, apis)


async def read_until_closed(sock: Socket) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await sock.ws.recv()


async def wait_for_online(api: Api, group: str, user_id: str, online: bool, timeout: float = 10) -> None:
    """Poll the inbox until ``user_id`` shows as (not) online among the group's members."""
    deadline = time.monotonic() + timeout
    while True:
        chats = (await api.get("/api/chats")).json()["chats"]
        chat = next(c for c in chats if c["chat_id"] == group)
        state = next(m for m in chat["members"] if m["user_id"] == user_id)["online"]
        if state is online:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"user did not become {'online' if online else 'offline'} within {timeout}s")
        await asyncio.sleep(0.2)


async def total(d: Deployment, key: str) -> float:
    return sum([(await d.metrics(i))[key] for i in range(len(d.nodes))])


def poll_ready(url: str, want: bool, timeout: float) -> float:
    """Poll /readyz until its status is (not) 200; return the time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ok = httpx.get(url + "/readyz", timeout=3).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok is want:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"/readyz of {url} did not turn {'green' if want else 'red'} within {timeout}s")


async def scrape_workers(url: str, workers: int = 2, timeout: float = 30) -> dict[str, dict[str, float]]:
    """``/metrics`` of each worker behind one port, by node id (the kernel hands each new connection to
    one of the workers)."""
    seen: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        assert time.monotonic() < deadline, f"expected {workers} workers with their own node id, saw {list(seen)}"
        async with httpx.AsyncClient() as c:  # a fresh connection each time
            text = (await c.get(url + "/metrics")).text
        seen[text.split('node="', 1)[1].split('"', 1)[0]] = parse_metrics(text)
    return seen


@pytest.fixture
def serve_workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``stratochat serve --port P --workers 2`` with Redis, as an operator runs it; killed if still up."""
    port = free_port()
    env = node_env(tmp_path / "data", redis_server.url, secrets.token_urlsafe(48), "w")
    env = {**os.environ, **env, "STRATOCHAT_HOST": "127.0.0.1"}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stratochat", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=60)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_serve_workers_runs_processes_that_chat(serve_workers: tuple[str, subprocess.Popen[bytes]]) -> None:
    """``stratochat serve --workers 2`` with Redis runs two worker processes with distinct node ids that
    deliver to each other's users; SIGTERM stops them all."""
    url, proc = serve_workers
    apis: list[Api] = []
    sockets: list[Socket] = []
    try:
        seen = await scrape_workers(url)
        assert all(n.startswith("w-") for n in seen)
        apis = await users(url, 4)
        group = (await apis[0].chat_with(*(a.username for a in apis[1:]), title="w"))["chat_id"]
        # One socket per user, then more devices until both workers hold sockets (the kernel, not a
        # balancer, picks the worker of each new connection).
        owners: list[int] = []
        for k in range(40):
            if k >= len(apis) and all(m["stratochat_connections"] > 0 for m in (await scrape_workers(url)).values()):
                break
            sockets.append(await apis[k % len(apis)].socket(url.replace("http", "ws") + "/ws"))
            owners.append(k % len(apis))
        per_worker = await scrape_workers(url)
        assert all(m["stratochat_connections"] > 0 for m in per_worker.values()), per_worker
        for u in range(len(apis)):
            await sockets[u].send({"type": "send", "chat_id": group, "content": f"from {u}"})
        for k, sock in enumerate(sockets):
            # Every socket gets every message but the ones it sent itself (the sender's other devices too).
            want = sorted(f"from {u}" for u in range(len(apis)) if u != k)
            got = sorted(f["message"]["content"] for f in await sock.frames("message", len(want), timeout=20))
            assert got == want, (owners[k], got)
        # Both workers received payloads from Redis: messages crossed between the processes.
        assert all(m["stratochat_hub_broker_in_total"] > 0 for m in (await scrape_workers(url)).values())
    finally:
        for s in sockets:
            await s.close()
        for a in apis:
            await a.aclose()
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) in (0, -signal.SIGTERM)


@pytest.fixture
def draining_node(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"STRATOCHAT_DATA_DIR": str(tmp_path / "data"), "STRATOCHAT_BURST_RATE": "0", "STRATOCHAT_DRAIN_SECONDS": "5"}
    node = ServerProcess(env, log_path=tmp_path / "node.log").start()
    try:
        yield node
    finally:
        node.stop()


async def test_sigterm_drains_then_closes_with_1012(draining_node: ServerProcess) -> None:
    """On SIGTERM a node first drains: /readyz fails and new sockets are refused (503) while open sockets
    still get their acks; then it closes them with 1012 and exits cleanly."""
    node = draining_node
    async with Api(node.url) as alice, Api(node.url) as bob:
        await alice.signup()
        await bob.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        a = await alice.socket(node.ws_url)
        b = await bob.socket(node.ws_url)
        assert node.proc is not None
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(poll_ready, node.url, False, 10)
        r = await alice.http.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "draining"
        with pytest.raises(InvalidStatus) as refused:
            await bob.socket(node.ws_url)
        assert refused.value.response.status_code == 503
        ack = await a.send_text(cid, "during the drain")
        assert (await b.expect("message"))["message"]["message_id"] == ack["message"]["message_id"]
        with pytest.raises(ConnectionClosed) as closed:
            await b.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert await asyncio.to_thread(node.proc.wait, 30) in (0, -signal.SIGTERM)
        assert time.monotonic() - t0 < 30
