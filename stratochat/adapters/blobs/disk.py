"""The embedded file store: objects as files under a local directory, their URLs served by this app.

How it differs from the port: the signed URLs point at this app itself (``UPLOAD_PATH`` and
``DOWNLOAD_PATH`` on ``origin``, served by ``stratochat.web.routes.files``), so on embedded installs the
bytes do pass through the app. A URL carries a token: a JSON payload and its HMAC-SHA256 under a key
derived from the app secret, so any node sharing the secret and the directory can serve it. An object is
written once (a second upload to its key is refused) and atomically (a temporary file linked into place).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

import orjson

from ...core.errors import BadRequest, Conflict, Forbidden, TooLarge
from ...core.models import UploadGrant
from ...core.ports import Clock

UPLOAD_PATH = "/blobs/upload"
DOWNLOAD_PATH = "/blobs/download"
# Room in an upload's body for the multipart framing and the fields beside the file.
FORM_OVERHEAD = 64 * 1024
_KEY = re.compile(r"^[A-Za-z0-9._-]{1,200}(?:/[A-Za-z0-9._-]{1,200}){0,8}$")
# Temporary files older than this are leftovers of a crash, not uploads in progress.
STALE_TMP_S = 3600
_COPY_CHUNK = 1 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class UploadTicket:
    key: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class DownloadTicket:
    key: str
    content_type: str
    disposition: str


class DiskBlobStore:
    def __init__(self, root: Path, secret: str, clock: Clock) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"
        # One key per purpose, so a token of another feature can never pass for a file URL.
        self._key = hmac.new(secret.encode(), b"stratochat blob urls v1", hashlib.sha256).digest()
        self._clock = clock

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    def _prepare(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - STALE_TMP_S
        for p in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self._tmp, os.W_OK):
            raise OSError(f"{self._tmp} is not writable")

    def origins(self) -> list[str]:
        return []

    # signing ---------------------------------------------------------------------------------------
    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def _verify(self, token: str, op: str) -> dict[str, Any]:
        refused = Forbidden("this link is invalid or has expired")
        body, _, mac = token.partition(".")
        try:
            expected = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
            # Compared as text: decoding first would accept other spellings of the same bytes (the last
            # base64 character carries two unused bits), so an altered link could still work.
            if not hmac.compare_digest(_b64(expected), mac):
                raise refused
            payload = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            raise refused from None
        if not isinstance(payload, dict) or payload.get("op") != op:
            raise refused
        expires = payload.get("exp")
        if not isinstance(expires, int) or self._clock.now_ms() >= expires:
            raise refused
        return payload

    def path_of(self, key: str) -> Path:
        if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
            raise BadRequest("invalid key")
        return self.root / key

    # BlobStore -------------------------------------------------------------------------------------
    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int, origin: str
    ) -> UploadGrant:
        self.path_of(key)
        expires_at = self._clock.now_ms() + expires_in * 1000
        token = self._sign({"op": "put", "k": key, "t": content_type, "s": size, "exp": expires_at})
        url = f"{origin.rstrip('/')}{UPLOAD_PATH}?{urlencode({'token': token})}"
        return UploadGrant(url, {"Content-Type": content_type}, expires_at)

    async def presign_download(
        self, key: str, *, content_type: str, disposition: str, expires_in: int, origin: str
    ) -> str:
        self.path_of(key)
        expires_at = self._clock.now_ms() + expires_in * 1000
        token = self._sign({"op": "get", "k": key, "t": content_type, "d": disposition, "exp": expires_at})
        return f"{origin.rstrip('/')}{DOWNLOAD_PATH}?{urlencode({'token': token})}"

    async def stat(self, key: str) -> int | None:
        path = self.path_of(key)

        def size() -> int | None:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(size)

    async def delete(self, key: str) -> None:
        path = self.path_of(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    # what the app's routes call --------------------------------------------------------------------
    def check_upload(self, token: str) -> UploadTicket:
        """The upload a token grants; ``Forbidden`` for a forged, altered or expired one."""
        p = self._verify(token, "put")
        try:
            return UploadTicket(str(p["k"]), str(p["t"]), int(p["s"]))
        except (KeyError, TypeError, ValueError):
            raise Forbidden("this link is invalid or has expired") from None

    def check_download(self, token: str) -> DownloadTicket:
        p = self._verify(token, "get")
        try:
            return DownloadTicket(str(p["k"]), str(p["t"]), str(p["d"]))
        except KeyError:
            raise Forbidden("this link is invalid or has expired") from None

    async def store(self, ticket: UploadTicket, source: IO[bytes]) -> None:
        """Write ``source`` as the ticket's object: exactly ``ticket.size`` bytes (more: ``TooLarge``,
        fewer: ``BadRequest``), once (an existing object: ``Conflict``), durably (fsync) and atomically."""
        await asyncio.to_thread(self._store, ticket, source)

    def _store(self, ticket: UploadTicket, source: IO[bytes]) -> None:
        final = self.path_of(ticket.key)
        if final.exists():
            raise Conflict("this file was already uploaded")
        tmp = self._tmp / uuid.uuid4().hex
        try:
            written = 0
            with open(tmp, "xb") as out:
                while chunk := source.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > ticket.size:
                        raise TooLarge(f"the file is larger than the {ticket.size} bytes granted")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if written != ticket.size:
                raise BadRequest(f"the file has {written} bytes, not the {ticket.size} granted")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, final)  # fails if the key exists: write-once, even against a racing upload
            except FileExistsError:
                raise Conflict("this file was already uploaded") from None
            _fsync_dir(final.parent)
        finally:
            tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
