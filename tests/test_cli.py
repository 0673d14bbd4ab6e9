"""The command line: users admin, and main.py starting the server as `stratochat serve` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.services.server import ROOT, free_port, wait_http


def run(args: list[str], data: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STRATOCHAT_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "stratochat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_users_commands(tmp_path: Path) -> None:
    """create, list, show and set-premium work on the embedded store; errors exit non-zero."""
    data = tmp_path / "data"
    r = run(["users", "create", "Admin", "--password-stdin"], data, "long-enough-pw\n")
    assert r.returncode == 0, r.stderr
    assert "created admin" in r.stdout
    assert run(["users", "create", "admin", "--password", "long-enough-pw"], data).returncode == 1
    assert "admin" in run(["users", "list"], data).stdout
    assert "tier:           free" in run(["users", "show", "admin"], data).stdout
    assert run(["users", "set-premium", "admin"], data).returncode == 0
    assert "tier:           premium" in run(["users", "show", "admin"], data).stdout
    assert run(["users", "set-premium", "admin", "--off"], data).returncode == 0
    assert "tier:           free" in run(["users", "show", "admin"], data).stdout
    missing = run(["users", "show", "nobody"], data)
    assert missing.returncode == 1 and "no user named" in missing.stderr


def test_workers_need_a_broker(tmp_path: Path) -> None:
    r = run(["serve", "--workers", "2"], tmp_path / "data")
    assert r.returncode == 2 and "REDIS_CLUSTER_ENDPOINT" in r.stderr


def test_main_py_serves_with_options(tmp_path: Path) -> None:
    """`python main.py --port P` starts the server on 127.0.0.1:P with data under STRATOCHAT_DATA_DIR."""
    port = free_port()
    env = {**os.environ, "STRATOCHAT_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        assert (tmp_path / "data" / "stratochat.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_seed_variable_names_are_honoured(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from stratochat.settings import Settings

    for k, v in {
        "SECRET_KEY": "k" * 40,
        "S3_BUCKET_NAME": "b",
        "REDIS_CLUSTER_ENDPOINT": "redis://127.0.0.1:1",
        "COGNITO_USER_POOL_ID": "us-east-1_x",
        "COGNITO_APP_CLIENT_ID": "c",
        "COGNITO_APP_CLIENT_SECRET": "s",
        "COGNITO_DOMAIN": "d.auth.example.com",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "STRATOCHAT_HOST": "0.0.0.0",
        "STRATOCHAT_PORT": "9001",
        "STRATOCHAT_SESSION_TTL": "4",
    }.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.secret_key, s.s3_bucket_name, s.redis_cluster_endpoint) == ("k" * 40, "b", "redis://127.0.0.1:1")
    assert (s.cognito_user_pool_id, s.cognito_app_client_id, s.cognito_app_client_secret) == ("us-east-1_x", "c", "s")
    assert (s.cognito_domain, s.aws_default_region) == ("d.auth.example.com", "eu-west-1")
    assert (s.host, s.port, s.session_ttl) == ("0.0.0.0", 9001, 4)
