"""Real redis-server processes on loopback: a single node and a three-primary Redis Cluster.

Session-scoped fixtures (``redis_url``, ``redis_cluster_url``) are shared: tests isolate themselves by
name (random user ids, a unique key prefix). A test that stops or restarts Redis builds its own with
``RedisServer`` / ``RedisClusterProcess`` (the ``make_redis`` fixture) so it cannot disturb others.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services.server import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As redis-server binds: connections of a killed server in TIME_WAIT do not block a restart.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    for _ in range(200):
        p = free_port()
        if p + 10000 < 65536 and p not in ports and _port_is_free(p + 10000):
            ports.append(p)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a Redis Cluster")


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} within {timeout}s")


def _cli(port: int, *args: str, timeout: float = 5.0) -> str:
    out = subprocess.run(
        [REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, timeout=timeout, check=False
    )
    return out.stdout.decode(errors="replace")


class RedisServer:
    """One ``redis-server`` without persistence. ``stop``/``start`` keep the port (a restart)."""

    def __init__(self, workdir: Path, port: int | None = None, cluster: bool = False) -> None:
        self.port = port or free_port()
        self.dir = workdir / str(self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> RedisServer:
        """Start the process without waiting for it (see ``wait``)."""
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
            args += ["--cluster-node-timeout", "5000"]
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        finally:
            log.close()
        return self

    def wait(self, timeout: float = 10.0) -> None:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited with {self.proc.returncode}")
            return "PONG" in _cli(self.port, "ping", timeout=2)

        _wait_for(up, timeout, f"redis-server on {self.port} did not answer")

    def start(self) -> RedisServer:
        self.launch().wait()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no persistence, nothing to flush: the fastest stop
            self.proc.wait(timeout=10)
        self.proc = None
        # The port must be reusable before a restart binds it again.
        with contextlib.suppress(TimeoutError):
            _wait_for(lambda: _port_is_free(self.port), 5, "port free")


class RedisClusterProcess:
    """Three primaries, no replicas (RECIPES section 1). ``stop``/``start`` restart every node on the
    same ports and directories, where nodes.conf keeps the slot map, so the cluster comes back."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes = [RedisServer(workdir, port, cluster=True) for port in cluster_ports(size)]
        self.created = False

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, timeout: float = 30.0) -> RedisClusterProcess:
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            n.wait()
        if not self.created:
            out = subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout!r} {out.stderr!r}")
            self.created = True
        _wait_for(self.healthy, timeout, "the Redis Cluster did not reach cluster_state:ok")
        return self

    def healthy(self) -> bool:
        for p in self.ports:
            info = _cli(p, "cluster", "info", timeout=2)
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return False
        return True

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[[str], RedisServer | RedisClusterProcess]]:
    """A private Redis (``"single"``) or Redis Cluster (``"cluster"``) that the test may stop and restart."""
    made: list[RedisServer | RedisClusterProcess] = []

    def make(kind: str) -> RedisServer | RedisClusterProcess:
        r: RedisServer | RedisClusterProcess
        r = RedisServer(tmp_path / "redis") if kind == "single" else RedisClusterProcess(tmp_path / "redis-cluster")
        made.append(r)
        return r.start()

    try:
        yield make
    finally:
        for r in made:
            r.stop()
