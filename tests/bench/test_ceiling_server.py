"""benchmarks/ceiling_server.py: the shipped server, but a message it acknowledges is never stored."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client import Api
from tests.services.server import free_port, wait_http

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ceiling_server.py"


@pytest.fixture
def ceiling_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"STRATOCHAT_DATA_DIR": str(tmp_path), "STRATOCHAT_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", 30, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_it_delivers_and_acks_but_stores_no_message(ceiling_url: str) -> None:
    ws_url = ceiling_url.replace("http://", "ws://") + "/ws"
    async with Api(ceiling_url) as alice, Api(ceiling_url) as bob:
        await alice.signup()
        await bob.signup()
        chat_id = (await alice.chat_with(bob.username))["chat_id"]
        a = await alice.socket(ws_url)
        b = await bob.socket(ws_url)
        try:
            for n in (1, 2):
                await a.send({"type": "send", "chat_id": chat_id, "content": f"m{n}", "client_msg_id": f"c{n}"})
                ack = await a.expect("ack", client_msg_id=f"c{n}")
                assert ack["message"]["seq"] == n
                got = await b.expect("message")
                assert got["message"]["content"] == f"m{n}" and got["message"]["seq"] == n
        finally:
            await a.ws.close()
            await b.ws.close()
        # The chat row moved on (its seq and preview are written); its messages were never stored.
        assert (await bob.history(chat_id))["messages"] == []
