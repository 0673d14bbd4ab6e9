"""Real Stratochat servers on loopback: in a thread (fast) or as a subprocess (kill, restart)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from stratochat.app import create_app
from stratochat.cli import uvicorn_options
from stratochat.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class ThreadServer:
    """uvicorn in a background thread, started and stopped by the test (httpx's serve_in_thread)."""

    def __init__(self, settings: Settings, server_options: dict[str, Any] | None = None, **app_kwargs: Any) -> None:
        # A port the test did not choose is a free one, never the default 8000 (tests run side by side).
        explicit = "port" in settings.model_fields_set and settings.port != 0
        self.settings = settings if explicit else settings.model_copy(update={"port": free_port()})
        self.app = create_app(self.settings, **app_kwargs)
        opts = uvicorn_options(self.settings)
        opts.update(loop="asyncio", timeout_graceful_shutdown=3, **(server_options or {}))
        self.server = uvicorn.Server(uvicorn.Config(self.app, **opts))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/ws"

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class ServerProcess:
    """``python -m stratochat serve`` as a child process with its own environment."""

    def __init__(self, env: dict[str, str], port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, **env, "STRATOCHAT_PORT": str(self.port), "STRATOCHAT_HOST": "127.0.0.1"}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stratochat", "serve"], env=self.env, cwd=ROOT, stdout=out, stderr=out
        )
        wait_http(self.url + "/healthz", timeout, self.proc)
        return self

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
