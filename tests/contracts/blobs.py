"""The BlobStore contract: what core/ports.py promises, checked against any adapter through the port alone.

A test module subclasses ``BlobStoreContract`` and provides the fixture ``blobs``: a ``BlobHarness`` with a
started store, the origin of the app that serves its URLs (adapters served by the app itself) and whether
the storage itself enforces its grants (moto does not: it stores any size or type and serves expired or
altered URLs; tests/test_blobs_contract.py checks the policy it is given instead, and LocalStack proves
the refusals for S3). Every URL is exercised over real HTTP, as a browser would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from stratochat.core.models import UploadGrant
from stratochat.core.ports import BlobStore

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass
class BlobHarness:
    name: str
    store: BlobStore
    origin: str
    enforces_grants: bool


def new_key() -> str:
    return f"uploads/{uuid.uuid4().hex}"


async def post(grant: UploadGrant, data: bytes, *, fields: dict[str, str] | None = None) -> httpx.Response:
    """Upload as the browser client does: every field in order, then the file as ``file``."""
    form = fields if fields is not None else grant.fields
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            grant.url, data=form, files={"file": ("upload.bin", data, form.get("Content-Type", "image/png"))}
        )


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url)


async def sleep_until(ms: int) -> None:
    """Wait for a wall-clock instant (expiry tests): unavoidable, URLs expire in real time."""
    await asyncio.sleep(max(0.0, ms / 1000 - time.time()))


class BlobStoreContract:
    async def grant(self, h: BlobHarness, key: str, size: int, ct: str = "image/png", ttl: int = 60) -> UploadGrant:
        return await h.store.presign_upload(key, content_type=ct, size=size, expires_in=ttl, origin=h.origin)

    async def download(self, h: BlobHarness, key: str, ttl: int = 60, **kw: str) -> str:
        return await h.store.presign_download(
            key,
            content_type=kw.get("content_type", "image/png"),
            disposition=kw.get("disposition", "inline; filename=\"a.png\"; filename*=UTF-8''a.png"),
            expires_in=ttl,
            origin=h.origin,
        )

    def require_enforcement(self, h: BlobHarness) -> None:
        if not h.enforces_grants:
            pytest.skip(f"{h.name} does not enforce its grants; its policy is checked on its own instead")

    async def test_upload_through_the_grant_then_download(self, blobs: BlobHarness) -> None:
        """A real upload through the grant stores the bytes; the download URL serves them with the given headers."""
        key = new_key()
        before = int(time.time() * 1000)
        grant = await self.grant(blobs, key, len(PNG))
        assert urlsplit(grant.url).scheme in ("http", "https") and urlsplit(grant.url).netloc
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in grant.fields.items())
        assert before + 50_000 <= grant.expires_at <= before + 70_000
        r = await post(grant, PNG)
        assert r.is_success, r.text
        assert await blobs.store.stat(key) == len(PNG)
        disposition = "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        r = await get(await self.download(blobs, key, content_type="application/pdf", disposition=disposition))
        assert r.status_code == 200 and r.content == PNG
        assert r.headers["content-type"].split(";")[0] == "application/pdf"
        assert r.headers["content-disposition"] == disposition

    async def test_stat_and_delete(self, blobs: BlobHarness) -> None:
        """stat is None for a missing key; delete removes an object and is idempotent."""
        key = new_key()
        assert await blobs.store.stat(key) is None
        await blobs.store.delete(key)
        assert (await post(await self.grant(blobs, key, 10), b"0123456789")).is_success
        assert await blobs.store.stat(key) == 10
        url = await self.download(blobs, key)
        await blobs.store.delete(key)
        await blobs.store.delete(key)
        assert await blobs.store.stat(key) is None
        assert (await get(url)).status_code >= 400

    async def test_keys_are_independent(self, blobs: BlobHarness) -> None:
        """Each grant writes its own key only."""
        a, b = new_key(), new_key()
        assert (await post(await self.grant(blobs, a, 3), b"aaa")).is_success
        assert await blobs.store.stat(b) is None
        assert (await post(await self.grant(blobs, b, 4), b"bbbb")).is_success
        assert (await get(await self.download(blobs, a))).content == b"aaa"
        assert (await get(await self.download(blobs, b))).content == b"bbbb"

    async def test_storage_refuses_another_size(self, blobs: BlobHarness) -> None:
        """One byte over (or under) the granted size is refused by the storage itself, and nothing is stored."""
        self.require_enforcement(blobs)
        key = new_key()
        grant = await self.grant(blobs, key, 1000)
        over = await post(grant, b"x" * 1001)
        assert 400 <= over.status_code < 500, over.text
        under = await post(grant, b"x" * 999)
        assert 400 <= under.status_code < 500, under.text
        assert await blobs.store.stat(key) is None
        assert (await post(grant, b"x" * 1000)).is_success

    async def test_storage_refuses_another_content_type(self, blobs: BlobHarness) -> None:
        """An upload declaring another content type than granted is refused, and nothing is stored."""
        self.require_enforcement(blobs)
        key = new_key()
        grant = await self.grant(blobs, key, len(PNG), ct="image/png")
        r = await post(grant, PNG, fields={**grant.fields, "Content-Type": "text/html"})
        assert 400 <= r.status_code < 500, r.text
        assert await blobs.store.stat(key) is None

    async def test_altered_download_url_is_refused(self, blobs: BlobHarness) -> None:
        """Changing the signature of a download URL makes it stop working."""
        self.require_enforcement(blobs)
        key = new_key()
        assert (await post(await self.grant(blobs, key, 3), b"abc")).is_success
        url = await self.download(blobs, key)
        last = url[-1]
        altered = url[:-1] + ("A" if last != "A" else "B")
        assert (await get(url)).status_code == 200
        assert 400 <= (await get(altered)).status_code < 500

    async def test_expired_urls_stop_working(self, blobs: BlobHarness) -> None:
        """Upload and download URLs stop working once they expire."""
        self.require_enforcement(blobs)
        stored, late = new_key(), new_key()
        assert (await post(await self.grant(blobs, stored, 3), b"abc")).is_success
        late_grant = await self.grant(blobs, late, 3, ttl=2)
        url = await self.download(blobs, stored, ttl=2)
        assert (await get(url)).status_code == 200
        # S3 signs with whole seconds: wait past the expiry plus one second of rounding.
        await sleep_until(late_grant.expires_at + 1500)
        assert 400 <= (await get(url)).status_code < 500
        assert 400 <= (await post(late_grant, b"abc")).status_code < 500
        assert await blobs.store.stat(late) is None

    async def test_origins_name_where_urls_point(self, blobs: BlobHarness) -> None:
        """origins() is empty for URLs this app serves, else it names the origin of every signed URL."""
        key = new_key()
        grant = await self.grant(blobs, key, 1)
        url = await self.download(blobs, key)
        origins = blobs.store.origins()
        for u in (grant.url, url):
            parts = urlsplit(u)
            origin = f"{parts.scheme}://{parts.netloc}"
            assert origin in origins or (not origins and origin == blobs.origin)
        await blobs.store.ping()
