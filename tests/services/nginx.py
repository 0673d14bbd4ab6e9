"""nginx in front of several nodes, from the shipped template deploy/nginx.conf (RECIPES: foreground,
private prefix, every temp path inside it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.services.server import ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TEMPLATE = ROOT / "deploy" / "nginx.conf"


def render(listen: int, upstream_ports: Sequence[int]) -> str:
    """The template with its two placeholders filled, as ``envsubst`` would."""
    servers = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
    text = TEMPLATE.read_text()
    assert "${NGINX_LISTEN}" in text and "${STRATOCHAT_UPSTREAMS}" in text
    return text.replace("${NGINX_LISTEN}", str(listen)).replace("${STRATOCHAT_UPSTREAMS}", servers)


class Nginx:
    def __init__(self, workdir: Path, upstream_ports: Sequence[int]) -> None:
        self.dir = workdir
        self.port = free_port()
        (self.dir / "temp").mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(render(self.port, upstream_ports))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 10.0) -> Nginx:
        args = [NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(self.conf)]
        check = subprocess.run([*args, "-t"], capture_output=True, timeout=10, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr.decode(errors='replace')}")
        self.proc = subprocess.Popen([*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}; see {self.dir / 'error.log'}")
            try:
                httpx.get(self.url + "/healthz", timeout=1.0)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("nginx did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def make_nginx(tmp_path: Path) -> Iterator[Callable[[Sequence[int]], Nginx]]:
    """Start nginx balancing over the given local ports; stopped after the test."""
    made: list[Nginx] = []

    def make(ports: Sequence[int]) -> Nginx:
        n = Nginx(tmp_path / f"nginx{len(made)}", ports)
        made.append(n)
        return n.start()

    try:
        yield make
    finally:
        for n in made:
            n.stop()
