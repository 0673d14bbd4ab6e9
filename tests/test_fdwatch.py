"""The file-descriptor watch: a node short of descriptors says so in its log."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stratochat.fdwatch import FdWatch
from tests.services.server import ROOT, free_port, wait_http


def test_warns_from_90_percent_once_a_minute_and_when_it_is_over(caplog: pytest.LogCaptureFixture) -> None:
    watch = FdWatch(repeat_s=60)
    with caplog.at_level(logging.WARNING, logger="stratochat.fdwatch"):
        watch.check(89, 100)
        assert caplog.records == []
        watch.check(90, 100)
        watch.check(99, 100)  # still short: not repeated within the minute
        assert [r.getMessage() for r in caplog.records] == [
            "running out of file descriptors: 90 of 100 open; new connections fail at the limit"
            " (raise LimitNOFILE / ulimit -n)"
        ]
        watch.check(50, 100)
        assert caplog.records[-1].getMessage() == "file descriptors back below 90% of the limit: 50 of 100 open"
        watch.check(50, 100)
        assert len(caplog.records) == 2


def test_a_server_near_its_descriptor_limit_logs_it(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "STRATOCHAT_DATA_DIR": str(tmp_path / "data")}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stratochat", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
        )
    conns: list[socket.socket] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        used = len(os.listdir(f"/proc/{proc.pid}/fd"))
        # Idle connections, each a descriptor of the server's, up to 60 of its 64.
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(60 - used)]
        deadline = time.monotonic() + 20
        while "running out of file descriptors" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert "running out of file descriptors" in log_path.read_text()
    finally:
        for c in conns:
            c.close()
        proc.terminate()
        proc.wait(timeout=30)
