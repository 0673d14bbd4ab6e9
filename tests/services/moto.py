"""moto in server mode over real HTTP, for DynamoDB, S3, SSM, Cognito and CloudFormation (session-scoped:
one process for the whole run).

Requests are handled one at a time. moto's own threaded server runs concurrent requests in parallel
without a lock, so its conditional writes and transactions are not atomic under concurrency (a cancelled
TransactWriteItems restores a copy of the whole table taken when it began, wiping writes that committed
meanwhile; two conditional writes can both pass). Real DynamoDB is atomic, so race tests need a moto that
is too: the same WSGI app behind a lock. Connections are still accepted concurrently (keep-alive works).

Tests isolate themselves by name (a unique table prefix, bucket or parameter path per test) rather than
by resetting the server, so tests cannot wipe each other's state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.services.server import free_port, wait_http

MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

LAUNCHER = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def serialized(environ, start_response):
    with lock:
        result = app(environ, start_response)
        try:
            return [b"".join(result)]
        finally:
            getattr(result, "close", lambda: None)()

run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True, request_handler=MotoRequestHandler)
"""


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto server on a free loopback port; AWS credentials for it are in os.environ."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "127.0.0.1", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in MOTO_ENV}
    os.environ.update(MOTO_ENV)
    try:
        wait_http(url + "/moto-api/", timeout=30, proc=proc)
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(scope="session")
def moto_serial_endpoint(moto_endpoint: str) -> str:
    """The same server, by the name the DynamoDB race tests use."""
    return moto_endpoint


@pytest.fixture
def unique_prefix() -> str:
    """A name prefix no other test uses (tables, buckets, parameter paths)."""
    return f"t{uuid.uuid4().hex[:10]}-"
