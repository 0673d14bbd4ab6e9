"""LocalStack's S3 on a free loopback port (session-scoped): the only local S3 that enforces a presigned
POST's ``content-length-range`` and checks presigned GET signatures and expiry.

It lives in its own Python 3.13 venv, ``.venv-localstack`` (scripts/test creates it from
requirements-localstack.txt). Without that venv the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.services.server import ROOT, free_port, wait_http

LOCALSTACK_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
# Its S3 checks signatures only with these keys.
LOCALSTACK_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@pytest.fixture(scope="session")
def localstack_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of LocalStack's S3 (signature validation on). Use LOCALSTACK_CREDENTIALS with it."""
    if not LOCALSTACK_PYTHON.exists():
        pytest.skip("LocalStack is not installed (.venv-localstack is absent; ./scripts/test creates it)")
    work = tmp_path_factory.mktemp("localstack")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        # The default (twisted) gateway ignores the host and binds every interface.
        "GATEWAY_SERVER": "hypercorn",
        "SERVICES": "s3",
        "S3_SKIP_SIGNATURE_VALIDATION": "0",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",  # no network beyond loopback here
        "FILESYSTEM_ROOT": str(work / "fs"),
        "LOCALSTACK_VOLUME_DIR": str(work / "vol"),
    }
    log = open(work / "localstack.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"], cwd=work, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_localstack/health", timeout=90, proc=proc)
        yield url
    finally:
        # Its shutdown hangs on SIGTERM; on SIGINT it stops within a few seconds.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
