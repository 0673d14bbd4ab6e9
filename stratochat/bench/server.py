"""Servers the bench starts itself (Stratochat or the bare relay) and what it reads of them in /proc."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .config import BenchConfig

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_KB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) // 1024


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.monotonic()
    rss_kb: int
    cpu_s: float  # user + system, of the process and its children still running


class ProcStats:
    """RSS and CPU time of processes (and their children, as uvicorn's ``--workers`` has) from /proc,
    summed: the nodes of one deployment are measured as one server."""

    def __init__(self, pid: int, *more: int) -> None:
        self.pids = (pid, *more)

    @property
    def pid(self) -> int:
        return self.pids[0]

    def _tree(self) -> list[int]:
        pids, todo = [], list(self.pids)
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError, ValueError):
                    todo.extend(int(c) for c in task.read_text().split())
        return pids

    def fd_limit(self) -> int | None:
        """The (first) process's soft limit of open files (its sockets included), None if unlimited or unreadable."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return None if soft == "unlimited" else int(soft)
        return None

    def sample(self) -> Sample | None:
        rss = 0
        cpu = 0.0
        try:
            for pid in self._tree():
                # Fields after the command (which may hold spaces) start after the last ")".
                stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                cpu += (int(stat[11]) + int(stat[12])) / _TICKS
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
        except (OSError, IndexError, ValueError):
            return None
        return Sample(time.monotonic(), rss, cpu)


def local_port_range() -> tuple[int, int] | None:
    """Linux's ephemeral ports: every client socket to one server address takes one of them."""
    with contextlib.suppress(OSError, ValueError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_relay_script() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks" / "relay.py"


def default_socketio_script() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks" / "socketio_relay.py"


def bench_server_env(cfg: BenchConfig, data_dir: Path) -> dict[str, str]:
    """A throwaway embedded server with every tier limit lifted: the bench measures the server, not the
    free tier (10 messages/s, 1,000 a day), and it signs in hundreds of accounts from one address."""
    env = {
        "STRATOCHAT_DATA_DIR": str(data_dir),
        "STRATOCHAT_BURST_RATE": "0",
        "STRATOCHAT_FREE_DAILY_MESSAGES": "unlimited",
        "STRATOCHAT_PREMIUM_DAILY_MESSAGES": "unlimited",
        "STRATOCHAT_LOGIN_MAX_FAILURES": "0",
        "STRATOCHAT_SIGNUP_RATE": "0",
        "STRATOCHAT_LOGIN_IP_MAX_FAILURES": "0",
        "STRATOCHAT_MAX_GROUP_MEMBERS": str(max(100, cfg.group + 1)),
        "STRATOCHAT_SESSION_TTL": "86400",
        "STRATOCHAT_LOG_LEVEL": "warning",
    }
    env.update(cfg.server_env)
    return env


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when the bench dies, even by SIGKILL (a ``timeout`` around it), so
    no server or redis-server outlives it. Linux only; elsewhere the ``with`` blocks are all there is."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _popen(cmd: list[str], env: dict[str, str] | None, cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=log, preexec_fn=preexec)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class RedisProcess:
    """A redis-server on a free loopback port, without persistence, for the nodes the bench starts."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise BenchSetupError("no redis-server on PATH: install it (Debian: redis-server) or pass --redis-url")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(self.dir), "--daemonize", "no", "--protected-mode", "no"]
        self.proc = _popen(cmd, None, self.dir, self.log_path)
        deadline = time.monotonic() + timeout
        # redis-server listens once it serves (no data to load here): an accepted connection is enough.
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchSetupError(f"redis-server exited with {self.proc.returncode}: {_log_tail(self.log_path)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise BenchSetupError(f"redis-server did not listen within {timeout:.0f}s: {_log_tail(self.log_path)}")

    def stop(self) -> None:
        _stop(self.proc, timeout=10)


class StartedServer:
    """One server process on loopback (node ``index`` of a deployment), started for one bench run."""

    def __init__(
        self, cfg: BenchConfig, tmp: Path, index: int = 0, redis_url: str | None = None, secret: str | None = None
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.redis_url = redis_url
        self.secret = secret
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / f"server-{index}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {**os.environ}
        host = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.cfg.target in ("relay", "socketio"):
            if self.cfg.target == "relay":
                script = self.cfg.relay_script or default_relay_script()
            else:
                script = self.cfg.socketio_script or default_socketio_script()
            if not script.is_file():
                raise BenchSetupError(f"no {self.cfg.target} baseline at {script}; pass --{self.cfg.target}-script")
            cmd = [sys.executable, str(script), *host, "--ws", self.cfg.relay_ws]
            if self.cfg.target == "socketio":
                assert self.redis_url is not None
                cmd += ["--redis", self.redis_url]
            return cmd, {**env, **self.cfg.server_env}
        cmd = [sys.executable, "-m", "stratochat", "serve", *host]
        node_env = bench_server_env(self.cfg, self.tmp / "data")
        if self.redis_url is not None:
            # The nodes share the data dir (one SQLite database), one Redis and one secret, like the
            # project's own multi-node tests (tests/services/cluster.py).
            node_env = {
                "REDIS_CLUSTER_ENDPOINT": self.redis_url,
                "STRATOCHAT_NODE_ID": f"bench-node{self.index}",
                "SECRET_KEY": self.secret or "",
                **node_env,
            }
        return cmd, {**env, **node_env}

    def start(self) -> None:
        cmd, env = self.command()
        # Started in the temporary directory, so no ./.env or ./data of the caller is picked up.
        self.proc = _popen(cmd, env, self.tmp, self.log_path)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        # With a broker, /readyz: a node is ready once its Redis links are up.
        path = "/readyz" if self.cfg.target == "stratochat" and self.redis_url else "/healthz"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchSetupError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url + path).status_code == 200:
                        return
                time.sleep(0.05)
        raise BenchSetupError(f"the server did not answer {path} within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return _log_tail(self.log_path, lines)

    def stop(self) -> None:
        _stop(self.proc)


class StartedDeployment:
    """What the bench starts when no ``--url`` is given: ``--nodes`` server processes and, when they need
    one (several nodes, or the socketio target), a redis-server they share. Always stopped (``with``),
    Redis last, and the temporary directory removed."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.tmp = Path(tempfile.mkdtemp(prefix="stratochat-bench-"))
        self.redis: RedisProcess | None = None
        self.redis_url = cfg.redis_url
        self.nodes: list[StartedServer] = []

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    @property
    def redis_pid(self) -> int | None:
        return self.redis.proc.pid if self.redis is not None and self.redis.proc is not None else None

    def __enter__(self) -> StartedDeployment:
        try:
            needs_redis = self.cfg.nodes > 1 or self.cfg.target == "socketio" or self.cfg.redis_url is not None
            if needs_redis and self.redis_url is None:
                self.redis = RedisProcess(self.tmp / "redis")
                self.redis.start()
                self.redis_url = self.redis.url
            secret = secrets.token_urlsafe(48)
            for i in range(self.cfg.nodes):
                node = StartedServer(self.cfg, self.tmp, i, self.redis_url if needs_redis else None, secret)
                self.nodes.append(node)
                # One after the other: the first creates the shared SQLite schema before the others open it.
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        try:
            for node in self.nodes:  # all told at once, so they drain in parallel
                if node.proc is not None and node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGTERM)
            for node in self.nodes:
                node.stop()
        finally:
            if self.redis is not None:
                self.redis.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)


class BenchSetupError(Exception):
    """The bench could not set a scenario up (server not reachable, a request refused, ...)."""
