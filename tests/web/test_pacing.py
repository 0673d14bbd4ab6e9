"""TurnGate and TurnPacer: a few waiters or callbacks through per loop turn, the others in later turns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratochat.app import create_app
from stratochat.settings import Settings
from stratochat.web.pacing import TurnGate, TurnPacer


async def test_waiters_pass_a_few_per_loop_turn_in_order() -> None:
    gate = TurnGate(2)
    passed: list[tuple[int, int]] = []
    turn = 0

    async def waiter(i: int) -> None:
        await gate.wait()
        passed.append((i, turn))

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    while len(passed) < 5 and turn < 50:
        await asyncio.sleep(0)
        turn += 1
    await asyncio.gather(*tasks)
    assert [i for i, _ in passed] == [0, 1, 2, 3, 4]
    turns = [t for _, t in passed]
    assert max(turns.count(t) for t in set(turns)) == 2  # never more than per_turn in one turn
    assert len(set(turns)) == 3


async def test_a_cancelled_waiter_takes_no_place() -> None:
    gate = TurnGate(1)
    a, b, c = (asyncio.create_task(gate.wait()) for _ in range(3))
    await asyncio.sleep(0)  # all three wait
    a.cancel()
    await asyncio.sleep(0)  # one release: a's place goes to b
    await asyncio.sleep(0)
    assert a.cancelled() and b.done() and not c.done()
    await asyncio.wait_for(c, 1)


async def test_callbacks_run_a_few_per_loop_turn_in_order_and_one_failure_stops_none() -> None:
    loop = asyncio.get_running_loop()
    pacer = TurnPacer(loop, 2)
    ran: list[tuple[int, int]] = []
    turn = 0
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context))

    def callback(i: int) -> None:
        ran.append((i, turn))
        if i == 1:
            raise RuntimeError("one socket's cleanup failed")

    for i in range(5):
        pacer.defer(lambda i=i: callback(i))
    assert ran == []  # nothing runs in the turn that defers
    while len(ran) < 5 and turn < 50:
        await asyncio.sleep(0)
        turn += 1
    loop.set_exception_handler(None)
    assert [i for i, _ in ran] == [0, 1, 2, 3, 4]
    turns = [t for _, t in ran]
    assert max(turns.count(t) for t in set(turns)) == 2 == pacer.most
    assert len(set(turns)) == 3
    assert [str(c["exception"]) for c in failures] == ["one socket's cleanup failed"]
    pacer.defer(lambda: callback(5))  # idle again: a later callback is scheduled anew
    await asyncio.sleep(0)
    assert ran[-1][0] == 5


class CountingGate:
    def __init__(self) -> None:
        self.waits = 0

    async def wait(self) -> None:
        self.waits += 1


async def test_http_requests_wait_their_turn_but_health_checks_do_not(tmp_path: Path) -> None:
    """In a reconnect storm thousands of inbox and history requests arrive at once: each starts only
    when the node's request gate lets it (a few per loop turn), so the open sockets' frames are served
    between them. A balancer's health check never waits behind them."""
    app = create_app(Settings(_env_file=None, data_dir=tmp_path / "data"))  # type: ignore[call-arg]
    gate = CountingGate()

    async def get(path: str) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {"requests": gate},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    assert await get("/healthz") == 200
    assert gate.waits == 0
    assert await get("/api/no-such-route") == 404
    assert gate.waits == 1
