"""A small deployment on loopback: N Stratochat server processes sharing one SQLite data directory and one
Redis (single node or Redis Cluster), with nginx in front (round robin) from deploy/nginx.conf."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.services.nginx import Nginx
from tests.services.redis import RedisClusterProcess, RedisServer
from tests.services.server import ServerProcess

# Small, so the tests can watch a dead node's users go offline: entries live 3 s, heartbeat every 1 s.
PRESENCE_TTL_S = 3


def node_env(data_dir: Path, redis_url: str, secret: str, node_id: str, **extra: str) -> dict[str, str]:
    return {
        "STRATOCHAT_DATA_DIR": str(data_dir),
        "STRATOCHAT_BURST_RATE": "0",
        "STRATOCHAT_NODE_ID": node_id,
        "STRATOCHAT_PRESENCE_TTL": str(PRESENCE_TTL_S),
        "REDIS_CLUSTER_ENDPOINT": redis_url,
        "SECRET_KEY": secret,
        **extra,
    }


def parse_metrics(text: str) -> dict[str, float]:
    """``{metric_name: value}`` of a single-node Prometheus text page (labels dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(3))
    return out


@dataclass
class Deployment:
    kind: str
    redis: RedisServer | RedisClusterProcess
    nodes: list[ServerProcess]
    lb: Nginx
    workdir: Path
    secret: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def start_node(self, i: int) -> ServerProcess:
        """(Re)start node ``i`` on its port, and wait until it is ready."""
        self.nodes[i].start()
        wait_ready(self.nodes[i].url)
        return self.nodes[i]

    async def metrics(self, i: int) -> dict[str, float]:
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(self.nodes[i].url + "/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            return parse_metrics(r.text)

    async def connections(self) -> list[int]:
        """Open sockets per node (0 for a node that is down)."""
        counts = []
        for i, n in enumerate(self.nodes):
            if n.proc is None or n.proc.poll() is not None:
                counts.append(0)
                continue
            counts.append(int((await self.metrics(i))["stratochat_connections"]))
        return counts

    async def node_of_new_socket(self, before: list[int], timeout: float = 10) -> int:
        """The index of the node whose socket count rose since ``before``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = await self.connections()
            rose = [i for i, (a, b) in enumerate(zip(before, now, strict=True)) if b > a]
            if rose:
                return rose[0]
            await asyncio.sleep(0.05)
        raise AssertionError("no node registered the new socket")


def metrics_sync(url: str) -> dict[str, float]:
    return parse_metrics(httpx.get(url + "/metrics", timeout=5).text)


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not become ready")


def launch(kind: str, redis: RedisServer | RedisClusterProcess, workdir: Path, nodes: int = 3) -> Deployment:
    secret = secrets.token_urlsafe(48)
    workdir.mkdir(parents=True, exist_ok=True)
    procs = [
        ServerProcess(node_env(workdir / "data", redis.url, secret, f"node{i}"), log_path=workdir / f"node{i}.log")
        for i in range(nodes)
    ]
    d = Deployment(kind, redis, procs, Nginx(workdir / "nginx", [p.port for p in procs]), workdir, secret)
    # The first node alone creates the SQLite schema; the others start together.
    d.start_node(0)
    with ThreadPoolExecutor(nodes) as pool:
        list(pool.map(d.start_node, range(1, nodes)))
    d.lb.start()
    return d


@pytest.fixture(scope="module", params=["single", "cluster"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three nodes, a private Redis (``single``) or Redis Cluster (``cluster``), and nginx, shared by the
    tests of a module (starting processes is what costs); see ``cluster`` for the per-test reset."""
    workdir = tmp_path_factory.mktemp(f"deploy-{request.param}")
    redis: RedisServer | RedisClusterProcess
    redis = RedisServer(workdir / "redis") if request.param == "single" else RedisClusterProcess(workdir / "redis")
    d: Deployment | None = None
    try:
        redis.start()
        d = launch(request.param, redis, workdir)
        yield d
    finally:
        if d is not None:
            d.lb.stop()
            for p in d.nodes:
                if p.proc is not None:
                    p.kill()
        redis.stop()


@pytest.fixture
def cluster(deployment: Deployment) -> Deployment:
    """The module's deployment, healed: Redis up, every node running, ready and without sockets."""
    d = deployment
    if isinstance(d.redis, RedisServer):
        if d.redis.proc is None or d.redis.proc.poll() is not None:
            d.redis.start()
    elif not d.redis.healthy():
        d.redis.stop()
        d.redis.start()
    dead = [i for i, n in enumerate(d.nodes) if n.proc is None or n.proc.poll() is not None]
    with ThreadPoolExecutor(max(1, len(dead))) as pool:
        list(pool.map(d.start_node, dead))
    for n in d.nodes:
        wait_ready(n.url)
    deadline = time.monotonic() + 15
    while [int(metrics_sync(n.url)["stratochat_connections"]) for n in d.nodes] != [0] * len(d.nodes):
        if time.monotonic() > deadline:
            raise AssertionError("sockets of the previous test are still open")
        time.sleep(0.05)
    return d
