"""moto in server mode with requests handled one at a time, for tests of DynamoDB's atomicity.

moto's threaded server runs concurrent requests in parallel without a lock, so its conditional writes
and transactions are not atomic under concurrency (a cancelled TransactWriteItems restores a copy of the
whole table taken when it began, wiping writes that committed meanwhile; two conditional writes can both
pass). Real DynamoDB is atomic, so race tests need a moto that is too: the same WSGI app behind a lock.
Connections are still accepted concurrently (keep-alive works); only the handling is serialized.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.services.moto import MOTO_ENV
from tests.services.server import free_port, wait_http

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
def moto_serial_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a serialized moto server on a free loopback port; AWS credentials for it are in os.environ."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto-serial") / "moto.log", "wb")  # noqa: SIM115
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
