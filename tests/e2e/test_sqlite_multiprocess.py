"""Several server processes on one SQLite data directory: seqs, idempotency, uniqueness and counters are
decided inside BEGIN IMMEDIATE transactions under SQLite's file lock, so concurrent writers on different
processes never share a seq, leave no gap, store no retry twice and lose no count."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.client import Api
from tests.services.server import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    env = {"STRATOCHAT_DATA_DIR": str(tmp_path / "data"), "STRATOCHAT_BURST_RATE": "0"}
    procs = [ServerProcess(env, log_path=tmp_path / f"node{i}.log") for i in range(3)]
    try:
        procs[0].start()  # creates the schema
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(ServerProcess.start, procs[1:]))
        yield procs
    finally:
        for p in procs:
            if p.proc is not None:
                p.stop()


async def test_concurrent_writers_on_three_processes(nodes: list[ServerProcess]) -> None:
    """Three processes, one database: racing registrations and direct chats resolve to one winner;
    concurrent sends get unique gapless seqs; concurrent retries of one client_msg_id on different
    processes store one message; the daily counters count each message once."""
    clients = [Api(n.url) for n in nodes]
    try:
        # The same username registered on every process at once: one 201, the others 409.
        names = [f"race{uuid.uuid4().hex[:8]}" for _ in range(4)]
        codes = await asyncio.gather(
            *(
                c.http.post("/api/auth/register", json={"username": name, "password": "correct horse"})
                for name in names
                for c in clients
            )
        )
        for i in range(len(names)):
            assert sorted(r.status_code for r in codes[i * 3 : i * 3 + 3]) == [201, 409, 409]

        users = [await Api(nodes[i % 3].url).signup() for i in range(8)]
        clients += users
        # The same direct chat asked for on three processes at once: one chat.
        same = [Api(n.url, users[0].token) for n in nodes]
        clients += same
        direct_ids = await asyncio.gather(*(c.chat_with(users[1].username) for c in same))
        assert len({c["chat_id"] for c in direct_ids}) == 1

        group = (await users[0].chat_with(*(u.username for u in users[1:]), title="race"))["chat_id"]
        # Each user sends 20 messages, spread over the three processes; every fifth is also retried at
        # the same moment on another process with the same client_msg_id.
        per_user = 20
        by_node = [[Api(n.url, u.token) for n in nodes] for u in users]
        clients += [c for row in by_node for c in row]
        jobs: list[tuple[int, Api, str]] = []
        turn = itertools.count()
        for ui in range(len(users)):
            for k in range(per_user):
                cmid = f"{ui}-{k}-{uuid.uuid4().hex[:6]}"
                jobs.append((ui, by_node[ui][next(turn) % 3], cmid))
                if k % 5 == 0:
                    jobs.append((ui, by_node[ui][next(turn) % 3], cmid))
        gate = asyncio.Semaphore(24)

        async def post(job: tuple[int, Api, str]) -> tuple[str, dict[str, Any]]:
            _, api, cmid = job
            async with gate:
                r = await api.post(f"/api/chats/{group}/messages", json={"content": cmid, "client_msg_id": cmid})
            assert r.status_code in (200, 201), r.text
            return cmid, r.json()["message"]

        results = await asyncio.gather(*(post(j) for j in jobs))
        by_cmid: dict[str, set[tuple[str, int]]] = {}
        for cmid, m in results:
            by_cmid.setdefault(cmid, set()).add((m["message_id"], m["seq"]))
        assert all(len(v) == 1 for v in by_cmid.values()), "a retry on another process stored a second message"
        total = len(users) * per_user
        assert len(by_cmid) == total

        for n in nodes:  # every process reads the same, complete history
            reader = Api(n.url, users[3].token)
            clients.append(reader)
            history = await reader.all_messages(group)
            assert [m["seq"] for m in history] == list(range(1, total + 1))
            assert sorted(m["client_msg_id"] for m in history) == sorted(by_cmid)
            assert {m["client_msg_id"]: (m["message_id"], m["seq"]) for m in history} == {
                k: next(iter(v)) for k, v in by_cmid.items()
            }
            chat = next(c for c in (await reader.get("/api/chats")).json()["chats"] if c["chat_id"] == group)
            assert chat["last_seq"] == total
        for ui in range(len(users)):
            me = (await by_node[ui][(ui + 1) % 3].get("/api/me")).json()
            assert me["usage"]["messages_today"] == per_user
    finally:
        for c in clients:
            await c.aclose()
