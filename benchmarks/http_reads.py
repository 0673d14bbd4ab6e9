"""Server CPU per REST read: ``--clients`` keep-alive connections fetch the inbox (``GET /api/chats``)
or a page of history (``GET /api/chats/{id}/messages?after=``) as fast as the server answers, for
``--duration`` seconds after a second of warm-up; it prints requests/s, the server's CPU per request
(from ``/proc/PID/stat``) and this client's. The client (one process) is usually the limit of requests/s on
two vCPUs, so compare CPU per request, alternating the trees being compared. ``--client`` picks the HTTP
client: ``bench`` (the default) is the load generator's own (``stratochat.bench.http``), ``httpx`` an
``httpx.AsyncClient`` per connection, which costs the client about six times the CPU per request.

    STRATOCHAT_SIGNUP_RATE=0 python -m stratochat serve --port 8768 & PID=$!
    python benchmarks/http_reads.py --url http://127.0.0.1:8768 --server-pid $PID --read inbox
    python benchmarks/http_reads.py --url http://127.0.0.1:8768 --server-pid $PID --read history
    python benchmarks/http_reads.py --url http://127.0.0.1:8768 --server-pid $PID --client httpx

What a reconnect storm costs the server is mostly these requests and the sockets' handshakes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import httpx

from stratochat.bench.http import Connections, HttpError


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def setup(url: str) -> tuple[dict[str, str], str]:
    """Two fresh accounts, their direct chat and five messages in it; the first one's bearer header."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        tag = uuid.uuid4().hex[:10]
        creds = [{"username": f"hr{tag}{i}", "password": "http-reads-pw-1"} for i in range(2)]
        for cred in creds:
            (await http.post("/api/auth/register", json=cred)).raise_for_status()
        login = await http.post("/api/auth/login", json=creds[0])
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        made = await http.post("/api/chats", json={"members": [creds[1]["username"]]}, headers=headers)
        made.raise_for_status()
        chat_id = made.json()["chat"]["chat_id"]
        for i in range(5):
            sent = await http.post(f"/api/chats/{chat_id}/messages", json={"content": f"m{i}"}, headers=headers)
            sent.raise_for_status()
    return headers, chat_id


async def run(args: argparse.Namespace) -> None:
    headers, chat_id = await setup(args.url)
    path = "/api/chats" if args.read == "inbox" else f"/api/chats/{chat_id}/messages?after=2"
    done = 0
    stop = asyncio.Event()

    async def client_httpx() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=args.url, timeout=30, headers=headers) as http:
            while not stop.is_set():
                r = await http.get(path)
                if r.status_code != 200:
                    raise SystemExit(f"GET {path}: {r.status_code} {r.text[:200]}")
                done += 1

    conns = Connections(args.url, args.clients, 30.0)

    async def client_bench() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                await conns.request("GET", path, headers)
            except HttpError as exc:
                raise SystemExit(str(exc)) from exc
            done += 1

    client = client_httpx if args.client == "httpx" else client_bench
    tasks = [asyncio.create_task(client()) for _ in range(args.clients)]
    await asyncio.sleep(1.0)
    n0, c0, t0, own0 = done, cpu_seconds(args.server_pid), time.monotonic(), time.process_time()
    await asyncio.sleep(args.duration)
    n1, c1, t1, own1 = done, cpu_seconds(args.server_pid), time.monotonic(), time.process_time()
    stop.set()
    await asyncio.gather(*tasks)
    await conns.aclose()
    n = max(1, n1 - n0)
    print(
        f"{args.read} ({args.client}): {n / (t1 - t0):.0f} req/s, server {1e6 * (c1 - c0) / n:.0f} us/request, "
        f"{(c1 - c0) / (t1 - t0):.2f} cores; client {1e6 * (own1 - own0) / n:.0f} us/request"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--server-pid", type=int, required=True, help="the server's pid, for its CPU time")
    p.add_argument("--read", choices=("inbox", "history"), default="inbox")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--client", choices=("bench", "httpx"), default="bench")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
