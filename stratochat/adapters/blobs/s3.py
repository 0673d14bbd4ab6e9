"""Files in an S3 bucket (or any S3-compatible store), reached by browsers with presigned URLs.

How it differs from the port: an upload grant is a presigned POST whose policy itself fixes the key, the
exact size (``content-length-range``) and the ``Content-Type``, so S3 refuses anything else; a download
is a presigned GET that fixes the response's ``Content-Type`` and ``Content-Disposition`` (S3 cannot add
``X-Content-Type-Options``). The endpoint and credentials come from the SDK's own configuration
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, the credential chain); the bucket is provisioned
elsewhere (``stratochat aws provision``), with the CORS rule documented in docs/protocol.md.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import aioboto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from ...core.errors import Unavailable
from ...core.models import UploadGrant
from ...core.ports import Clock

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class S3BlobStore:
    def __init__(self, bucket: str, *, region: str | None, clock: Clock) -> None:
        self.bucket = bucket
        self._region = region
        self._clock = clock
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._origins: list[str] = []

    async def start(self) -> None:
        if self._client is not None:
            raise RuntimeError("S3BlobStore is already started")
        config = Config(
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=15,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = aioboto3.Session()
        self._client = await self._stack.enter_async_context(
            session.client("s3", region_name=self._region, config=config)
        )
        # The origin browsers will reach (virtual-hosted bucket, or the custom endpoint): the browser
        # client's CSP must allow it.
        probe = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": "probe"}, ExpiresIn=1
        )
        parts = urlsplit(probe)
        self._origins = [f"{parts.scheme}://{parts.netloc}"]

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    def origins(self) -> list[str]:
        return list(self._origins)

    def _open(self) -> Any:
        if self._client is None:
            raise Unavailable("file storage is not started")
        return self._client

    async def ping(self) -> None:
        try:
            await self._open().head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(f"S3 bucket {self.bucket} did not answer: {exc}") from exc

    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int, origin: str
    ) -> UploadGrant:
        expires_at = self._clock.now_ms() + expires_in * 1000
        try:
            post = await self._open().generate_presigned_post(
                self.bucket,
                key,
                Fields={"Content-Type": content_type},
                Conditions=[{"Content-Type": content_type}, ["content-length-range", size, size]],
                ExpiresIn=expires_in,
            )
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("file storage could not sign an upload") from exc
        return UploadGrant(str(post["url"]), {str(k): str(v) for k, v in post["fields"].items()}, expires_at)

    async def presign_download(
        self, key: str, *, content_type: str, disposition: str, expires_in: int, origin: str
    ) -> str:
        try:
            url = await self._open().generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition,
                    "ResponseCacheControl": "private, max-age=300",
                },
                ExpiresIn=expires_in,
            )
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable("file storage could not sign a download") from exc
        return str(url)

    async def stat(self, key: str) -> int | None:
        try:
            head = await self._open().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise Unavailable(f"file storage did not answer: {exc}") from exc
        except BotoCoreError as exc:
            raise Unavailable(f"file storage did not answer: {exc}") from exc
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        try:
            await self._open().delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(f"file storage did not answer: {exc}") from exc
