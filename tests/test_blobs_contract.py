"""The BlobStore contract, run once per adapter: local disk served by a real app, S3 on moto and on
LocalStack over real HTTP. Plus what only S3 on moto can show: the POST policy it is given."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aioboto3  # type: ignore[import-untyped]
import orjson
import pytest

from stratochat.adapters.blobs.disk import DiskBlobStore
from stratochat.adapters.blobs.s3 import S3BlobStore
from stratochat.app import secret_key
from stratochat.core.clock import SystemClock
from stratochat.settings import Settings
from tests.contracts.blobs import BlobHarness, BlobStoreContract, new_key, post
from tests.services.localstack import LOCALSTACK_CREDENTIALS
from tests.services.server import ThreadServer


async def s3_harness(name: str, endpoint: str, monkeypatch: pytest.MonkeyPatch, enforces: bool) -> S3BlobStore:
    # The adapter finds the endpoint as the SDK defines it, like a deployment would.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"blobs-{uuid.uuid4().hex[:16]}"
    async with aioboto3.Session().client("s3", region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, region="us-east-1", clock=SystemClock())


@pytest.fixture(params=["disk", "s3-moto", "s3-localstack"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BlobHarness]:
    server: ThreadServer | None = None
    origin = "http://127.0.0.1:1"
    if request.param == "disk":
        # The app serves the disk store's URLs: a real server on the same directory and secret.
        settings = Settings(_env_file=None, data_dir=tmp_path / "data", burst_rate=0, port=0)  # type: ignore[call-arg]
        server = ThreadServer(settings).start()
        origin = server.url
        store: DiskBlobStore | S3BlobStore = DiskBlobStore(
            settings.data_dir / "files", secret_key(settings), SystemClock()
        )
    elif request.param == "s3-moto":
        store = await s3_harness(request.param, request.getfixturevalue("moto_endpoint"), monkeypatch, False)
    else:
        endpoint = request.getfixturevalue("localstack_endpoint")
        for k, v in LOCALSTACK_CREDENTIALS.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        store = await s3_harness(request.param, endpoint, monkeypatch, True)
    await store.start()
    try:
        yield BlobHarness(request.param, store, origin, enforces_grants=request.param != "s3-moto")
    finally:
        await store.close()
        if server is not None:
            server.stop()


class TestBlobStoreContract(BlobStoreContract):
    pass


@pytest.fixture
async def moto_s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3BlobStore]:
    store = await s3_harness("s3-moto", moto_endpoint, monkeypatch, False)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def test_s3_post_policy_enforces_key_size_and_type(moto_s3: S3BlobStore) -> None:
    """The presigned POST's policy fixes bucket, key, exact size and content type, and expires with the grant."""
    key = new_key()
    grant = await moto_s3.presign_upload(key, content_type="image/webp", size=2048, expires_in=120, origin="x")
    assert grant.fields["key"] == key and grant.fields["Content-Type"] == "image/webp"
    assert list(grant.fields)[-1] in ("x-amz-signature", "policy", "signature")
    policy = orjson.loads(base64.b64decode(grant.fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 2048, 2048] in conditions
    assert {"Content-Type": "image/webp"} in conditions
    assert {"key": key} in conditions and {"bucket": moto_s3.bucket} in conditions
    expiration = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert abs(expiration - (time.time() + 120)) < 5
    assert abs(grant.expires_at / 1000 - expiration) < 5


async def test_s3_download_url_fixes_response_headers(moto_s3: S3BlobStore) -> None:
    """The presigned GET carries the response content type and disposition (S3 cannot add nosniff)."""
    key = new_key()
    assert (
        await post(
            await moto_s3.presign_upload(key, content_type="image/png", size=3, expires_in=60, origin=""), b"abc"
        )
    ).is_success
    url = await moto_s3.presign_download(
        key,
        content_type="application/octet-stream",
        disposition='attachment; filename="x.svg"',
        expires_in=60,
        origin="",
    )
    assert "response-content-type=application%2Foctet-stream" in url
    assert "response-content-disposition=attachment" in url


async def test_disk_links_accept_one_spelling_of_their_signature(tmp_path: Path) -> None:
    """A signature's last base64 character carries two unused bits: the three other characters that decode
    to the same bytes are refused all the same (an altered link never works)."""
    from urllib.parse import parse_qs, urlsplit

    from stratochat.core.errors import Forbidden

    store = DiskBlobStore(tmp_path / "files", "k" * 32, SystemClock())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    seen_variants = 0
    for _ in range(20):
        url = await store.presign_download(
            new_key(), content_type="text/plain", disposition="attachment", expires_in=60, origin="http://x"
        )
        token = parse_qs(urlsplit(url).query)["token"][0]
        store.check_download(token)
        last = alphabet.index(token[-1])
        for variant in alphabet[last & ~3 : (last & ~3) + 4]:
            if variant != token[-1]:
                seen_variants += 1
                with pytest.raises(Forbidden):
                    store.check_download(token[:-1] + variant)
    assert seen_variants == 60
