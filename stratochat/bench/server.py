"""Servers the bench starts itself (Stratochat or the bare relay) and what it reads of them in /proc."""

from __future__ import annotations

import contextlib
import os
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
    """RSS and CPU time of a process (and its children, as uvicorn's ``--workers`` has) from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError, ValueError):
                    todo.extend(int(c) for c in task.read_text().split())
        return pids

    def fd_limit(self) -> int | None:
        """The process's soft limit of open files (its sockets included), None if unlimited or unreadable."""
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


class StartedServer:
    """A server process on loopback, started for one bench run and always stopped (``with``)."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="stratochat-bench-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {**os.environ}
        if self.cfg.target == "relay":
            script = self.cfg.relay_script or default_relay_script()
            if not script.is_file():
                raise BenchSetupError(f"no relay at {script}; pass --relay-script or --url")
            cmd = [sys.executable, str(script), "--host", "127.0.0.1", "--port", str(self.port)]
            return [*cmd, "--ws", self.cfg.relay_ws], {**env, **self.cfg.server_env}
        cmd = [sys.executable, "-m", "stratochat", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        return cmd, {**env, **bench_server_env(self.cfg, self.tmp / "data")}

    def __enter__(self) -> StartedServer:
        cmd, env = self.command()
        with open(self.log_path, "wb") as log:
            # Started in the temporary directory, so no ./.env or ./data of the caller is picked up.
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.tmp, stdout=log, stderr=log)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchSetupError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(self.url + "/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise BenchSetupError(f"the server did not answer /healthz within {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


class BenchSetupError(Exception):
    """The bench could not set a scenario up (server not reachable, a request refused, ...)."""
