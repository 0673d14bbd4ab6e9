"""Files over real HTTP: upload grants, uploads to the embedded store, file messages, downloads, limits."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioboto3  # type: ignore[import-untyped]
import httpx
import pytest

from stratochat.core.clock import FakeClock
from stratochat.settings import Settings
from tests.client import Api
from tests.services.server import ThreadServer
from tests.web.test_auth import error_code

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


async def grant(
    api: Api, chat_id: str, size: int, filename: str = "photo.png", ct: str = "image/png"
) -> httpx.Response:
    return await api.post(f"/api/chats/{chat_id}/files", json={"filename": filename, "content_type": ct, "size": size})


async def upload(upload: dict[str, Any], data: bytes, *, fields: dict[str, str] | None = None) -> httpx.Response:
    """POST the fields in order, then the file, as the browser client does (no session)."""
    form = fields if fields is not None else upload["fields"]
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(upload["url"], data=form, files={"file": ("blob", data, form.get("Content-Type", ""))})


async def granted_upload(api: Api, chat_id: str, data: bytes, **kw: Any) -> dict[str, Any]:
    r = await grant(api, chat_id, len(data), **kw)
    assert r.status_code == 201, r.text
    up: dict[str, Any] = r.json()["upload"]
    r = await upload(up, data)
    assert r.is_success, r.text
    return up


async def send_file(
    api: Api, chat_id: str, file_id: str, caption: str | None = None, cmid: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"file_id": file_id}
    if caption is not None:
        body["content"] = caption
    if cmid is not None:
        body["client_msg_id"] = cmid
    return await api.post(f"/api/chats/{chat_id}/messages", json=body)


async def usage(api: Api) -> dict[str, Any]:
    r = await api.get("/api/me")
    assert r.status_code == 200
    return dict(r.json())


async def fetch(api: Api, file_id: str) -> httpx.Response:
    """``GET /api/files/{id}``, then the URL it redirects to (without the session, as a browser would)."""
    r = await api.get(f"/api/files/{file_id}")
    assert r.status_code == 302, r.text
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(r.headers["location"])


@pytest.fixture
def files_server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server(port=0)


@pytest.fixture
async def trio(files_server: ThreadServer) -> AsyncIterator[tuple[Api, Api, Api]]:
    async with Api(files_server.url) as a, Api(files_server.url) as b, Api(files_server.url) as c:
        yield await a.signup(), await b.signup(), await c.signup()


async def test_file_message_round_trip(files_server: ThreadServer, trio: tuple[Api, Api, Api]) -> None:
    """Grant, upload, send: the peer gets a file message live, the inbox shows the filename, the member downloads it."""
    alice, bob, _ = trio
    chat = await alice.chat_with(bob.username)
    cid = chat["chat_id"]
    sock = await bob.socket(files_server.ws_url)
    try:
        r = await grant(alice, cid, len(PNG))
        assert r.status_code == 201, r.text
        up = r.json()["upload"]
        assert up["url"].startswith(files_server.url + "/") and up["expires_at"].endswith("Z")
        assert up["fields"] == {"Content-Type": "image/png"} and len(up["file_id"]) == 32
        assert (await upload(up, PNG)).status_code == 204
        r = await send_file(alice, cid, up["file_id"])
        assert r.status_code == 201, r.text
        msg = r.json()["message"]
        want = {"file_id": up["file_id"], "filename": "photo.png", "content_type": "image/png", "size": len(PNG)}
        assert msg["message_type"] == "file" and msg["file"] == want and msg["content"] == ""
        live = await sock.expect("message")
        assert live["message"]["file"] == want and live["message"]["seq"] == 1
    finally:
        await sock.close()
    inbox = (await bob.get("/api/chats")).json()["chats"]
    assert inbox[0]["last_message_content"] == "photo.png" and inbox[0]["unread_count"] == 1
    me = await usage(alice)
    assert me["usage"] == {"messages_today": 1, "storage_bytes": len(PNG)}
    assert (await bob.history(cid))["messages"][0]["file"] == want
    got = await fetch(bob, up["file_id"])
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-disposition"] == "inline; filename=\"photo.png\"; filename*=UTF-8''photo.png"
    assert got.headers["x-content-type-options"] == "nosniff"


async def test_caption_over_the_socket(files_server: ThreadServer, trio: tuple[Api, Api, Api]) -> None:
    """A send frame with file_id and content stores a captioned file message; the caption is the preview."""
    alice, bob, _ = trio
    cid = (await alice.chat_with(bob.username))["chat_id"]
    up = await granted_upload(alice, cid, b"%PDF-1.7 minimal", filename="Résumé 2026.pdf", ct="application/pdf")
    sock = await alice.socket(files_server.ws_url)
    try:
        await sock.send(
            {"type": "send", "chat_id": cid, "file_id": up["file_id"], "content": "my cv", "client_msg_id": "f1"}
        )
        ack = await sock.expect("ack", client_msg_id="f1")
    finally:
        await sock.close()
    assert ack["message"]["message_type"] == "file" and ack["message"]["content"] == "my cv"
    assert ack["message"]["file"]["filename"] == "Résumé 2026.pdf"
    assert (await bob.get("/api/chats")).json()["chats"][0]["last_message_content"] == "my cv"
    got = await fetch(bob, up["file_id"])
    assert got.content == b"%PDF-1.7 minimal" and got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"Resume 2026.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf"
    )


async def test_grant_refusals(make_server: Callable[..., ThreadServer]) -> None:
    """Non-members get not_found; bad names and types bad_request; too big too_large; over quota quota_exceeded."""
    server = make_server(port=0, free_storage_bytes=5000, free_max_file_bytes=4000)
    async with Api(server.url) as a, Api(server.url) as b, Api(server.url) as c:
        alice, bob, carol = await a.signup(), await b.signup(), await c.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        r = await grant(carol, cid, 10)
        assert r.status_code == 404 and error_code(r) == "not_found"
        assert (await grant(alice, "no-such-chat", 10)).status_code == 404
        for name in (
            "../etc/passwd",
            "a/b.png",
            "a\\b.png",
            "bad\x00.png",
            "line\nbreak.png",
            "evil\u202egnp.exe",
            "x\u2066y.png",
            "",
            "   ",
            "..",
            "é" * 128 + ".png",
            5,
            None,
        ):
            r = await grant(alice, cid, 10, filename=name)  # type: ignore[arg-type]
            assert r.status_code == 400 and error_code(r) == "bad_request", (name, r.text)
        assert (await grant(alice, cid, 10, filename="  ok name (1).png  ")).status_code == 201
        for ct in ("image/svg+xml", "text/html", "application/x-msdownload", "garbage", "image/", "", None, 3):
            r = await grant(alice, cid, 10, ct=ct)  # type: ignore[arg-type]
            assert r.status_code == 400 and error_code(r) == "bad_request", (ct, r.text)
        assert (await grant(alice, cid, 10, ct="text/plain; charset=utf-8")).status_code == 201
        for size in (0, -1, "12", True, 1.5, None):
            r = await grant(alice, cid, size)  # type: ignore[arg-type]
            assert r.status_code in (400, 422) and error_code(r) == "bad_request", (size, r.text)
        r = await grant(alice, cid, 4001)
        assert r.status_code == 413 and error_code(r) == "too_large"
        await send_file(alice, cid, (await granted_upload(alice, cid, b"x" * 3000))["file_id"])
        r = await grant(alice, cid, 2001)
        assert r.status_code == 429 and error_code(r) == "quota_exceeded" and "storage" in r.json()["error"]["detail"]
        assert (await grant(alice, cid, 2000)).status_code == 201
        me = await usage(alice)
        assert me["limits"] == {"daily_messages": 1000, "storage_bytes": 5000, "max_file_bytes": 4000}
        assert me["usage"]["storage_bytes"] == 3000


async def test_send_refusals_store_nothing(trio: tuple[Api, Api, Api]) -> None:
    """Unknown, not uploaded, someone else's, other chat's or already sent files are bad_request; a retry is not."""
    alice, bob, carol = trio
    cid = (await alice.chat_with(bob.username))["chat_id"]
    other = (await alice.chat_with(carol.username))["chat_id"]
    r = await grant(alice, cid, len(PNG))
    pending = r.json()["upload"]["file_id"]
    theirs = (await granted_upload(bob, cid, b"bob's"))["file_id"]
    elsewhere = (await granted_upload(alice, other, b"other chat"))["file_id"]
    for file_id in (pending, theirs, elsewhere, uuid.uuid4().hex, "not-an-id", 7):
        r = await send_file(alice, cid, file_id)  # type: ignore[arg-type]
        assert r.status_code in (400, 422) and error_code(r) == "bad_request", (file_id, r.text)
    sent = (await granted_upload(alice, cid, b"once"))["file_id"]
    first = await send_file(alice, cid, sent, cmid="c1")
    assert first.status_code == 201
    retry = await send_file(alice, cid, sent, cmid="c1")
    assert retry.status_code == 201 and retry.json()["message"] == first.json()["message"]
    again = await send_file(alice, cid, sent, cmid="c2")
    assert again.status_code == 400 and "already sent" in again.json()["error"]["detail"]
    chat = next(c for c in (await alice.get("/api/chats")).json()["chats"] if c["chat_id"] == cid)
    assert chat["last_seq"] == 1
    assert (await usage(alice))["usage"] == {"messages_today": 1, "storage_bytes": 4}
    r = await alice.post(f"/api/chats/{cid}/messages", json={"file_id": pending, "content": 5})
    assert r.status_code == 422 and error_code(r) == "bad_request"


async def test_downloads_only_for_members(trio: tuple[Api, Api, Api]) -> None:
    """A non-member, or anyone for a file not sent yet, gets not_found exactly as for an unknown file."""
    alice, bob, carol = trio
    cid = (await alice.chat_with(bob.username))["chat_id"]
    up = await granted_upload(alice, cid, PNG)
    r = await alice.get(f"/api/files/{up['file_id']}")
    assert r.status_code == 404  # uploaded, not sent
    assert (await send_file(alice, cid, up["file_id"])).status_code == 201
    unknown = await carol.get(f"/api/files/{uuid.uuid4().hex}")
    stranger = await carol.get(f"/api/files/{up['file_id']}")
    assert stranger.status_code == unknown.status_code == 404 and stranger.json() == unknown.json()
    assert (await carol.get("/api/files/..%2F..%2Fsecret_key")).status_code == 404
    assert (await Api(alice.base_url).get(f"/api/files/{up['file_id']}")).status_code == 401
    assert (await bob.get(f"/api/files/{up['file_id']}")).status_code == 302


async def test_active_types_never_inline(make_server: Callable[..., ThreadServer]) -> None:
    """An allowed SVG or HTML file downloads as an opaque attachment with nosniff, never as a page."""
    server = make_server(port=0, file_content_types="image/svg+xml,text/html,image/png")
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        assert (await grant(alice, cid, 10, ct="application/pdf")).status_code == 400  # not in this allow-list
        for name, ct in (("x.svg", "image/svg+xml"), ("x.html", "text/html")):
            up = await granted_upload(alice, cid, b"<svg onload=alert(1)>", filename=name, ct=ct)
            assert (await send_file(alice, cid, up["file_id"])).status_code == 201
            got = await fetch(bob, up["file_id"])
            assert got.headers["content-type"] == "application/octet-stream"
            assert got.headers["content-disposition"].startswith("attachment;")
            assert got.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in got.headers["content-security-policy"]


async def test_embedded_store_refuses_what_was_not_granted(trio: tuple[Api, Api, Api]) -> None:
    """The embedded store refuses a body over or under the granted size, another type, a forged URL or a rewrite."""
    alice, bob, _ = trio
    cid = (await alice.chat_with(bob.username))["chat_id"]
    up = (await grant(alice, cid, 100)).json()["upload"]
    r = await upload(up, b"x" * 101)
    assert r.status_code == 413 and error_code(r) == "too_large"
    r = await upload(up, b"x" * 99)
    assert r.status_code == 400 and error_code(r) == "bad_request"
    r = await upload(up, b"x" * 100, fields={"Content-Type": "text/html"})
    assert r.status_code == 400 and error_code(r) == "bad_request"
    forged = {**up, "url": up["url"][:-2] + ("AA" if not up["url"].endswith("AA") else "BB")}
    r = await upload(forged, b"x" * 100)
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert (await send_file(alice, cid, up["file_id"])).status_code == 400  # nothing stored
    assert (await upload(up, b"x" * 100)).status_code == 204
    r = await upload(up, b"y" * 100)
    assert r.status_code == 409 and error_code(r) == "conflict"
    async with httpx.AsyncClient() as http:
        r = await http.post(up["url"], content=b"x" * 100, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 400 and error_code(r) == "bad_request"


async def test_upload_route_takes_the_tier_maximum(files_server: ThreadServer, trio: tuple[Api, Api, Api]) -> None:
    """A 1.5 MiB file (under the free 2 MiB limit) uploads although other routes keep their 1 MiB body cap."""
    alice, bob, _ = trio
    cid = (await alice.chat_with(bob.username))["chat_id"]
    big = bytes(1536 * 1024)
    up = await granted_upload(alice, cid, big, filename="big.zip", ct="application/zip")
    assert (await send_file(alice, cid, up["file_id"])).status_code == 201
    assert (await fetch(bob, up["file_id"])).content == big
    r = await alice.post(
        "/api/chats", content=b"{" + b" " * (1024 * 1024) + b"}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and error_code(r) == "too_large"


async def test_expired_links_stop_working(make_server: Callable[..., ThreadServer]) -> None:
    """With a 1 s URL lifetime an unused upload URL and a download URL stop working; a fresh link works."""
    server = make_server(port=0, file_url_ttl=1)
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        late = (await grant(alice, cid, 3)).json()["upload"]
        up = await granted_upload(alice, cid, b"abc")
        assert (await send_file(alice, cid, up["file_id"])).status_code == 201
        r = await bob.get(f"/api/files/{up['file_id']}")
        link = r.headers["location"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(link)).status_code == 200
            await asyncio.sleep(1.2)  # the 1 s lifetime, in real time
            r = await http.get(link)
            assert r.status_code == 403 and error_code(r) == "forbidden"
        r = await upload(late, b"abc")
        assert r.status_code == 403 and error_code(r) == "forbidden"
        assert (await fetch(bob, up["file_id"])).content == b"abc"


async def test_unused_grants_are_purged(make_server: Callable[..., ThreadServer], tmp_path: Path) -> None:
    """A grant never sent leaves no charge, and its record and blob are purged once void."""
    server = make_server(port=0, file_url_ttl=1, file_pending_ttl=1, file_purge_interval=0.2)
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        up = await granted_upload(alice, cid, b"never sent")
        kept = await granted_upload(alice, cid, b"sent")
        assert (await send_file(alice, cid, kept["file_id"])).status_code == 201
        blob = server.settings.data_dir / "files" / "uploads" / up["file_id"]
        assert blob.exists()
        db = server.settings.database_path

        def records() -> set[str]:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return {r[0] for r in conn.execute("SELECT file_id FROM files")}

        assert up["file_id"] in records()
        for _ in range(200):  # poll, at most 20 s
            if not blob.exists() and up["file_id"] not in records():
                break
            await asyncio.sleep(0.1)
        assert not blob.exists() and records() == {kept["file_id"]}
        assert (server.settings.data_dir / "files" / "uploads" / kept["file_id"]).exists()
        r = await send_file(alice, cid, up["file_id"])
        assert r.status_code == 400
        assert (await usage(alice))["usage"]["storage_bytes"] == 4


async def test_storage_quota_holds_under_concurrent_sends(make_server: Callable[..., ThreadServer]) -> None:
    """50 concurrent file sends at the storage limit: exactly what fits is stored, never more."""
    size = 100
    server = make_server(port=0, free_storage_bytes=5 * size)
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        ups = await asyncio.gather(*(granted_upload(alice, cid, bytes([i]) * size) for i in range(50)))
        results = await asyncio.gather(*(send_file(alice, cid, u["file_id"]) for u in ups))
        codes = sorted(r.status_code for r in results)
        assert codes == [201] * 5 + [429] * 45
        assert all(error_code(r) == "quota_exceeded" for r in results if r.status_code == 429)
        me = await usage(alice)
        assert me["usage"]["storage_bytes"] == 5 * size and me["usage"]["messages_today"] == 5
        assert len((await alice.history(cid))["messages"]) == 5


async def test_daily_limit_counts_files_and_rolls_over(tmp_path: Path) -> None:
    """Text and file messages count toward the daily limit; over it nothing is stored; 00:00 UTC resets it."""
    clock = FakeClock()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=tmp_path / "data", burst_rate=0, port=0, free_daily_messages=3, session_ttl=30 * 86400
    )
    server = ThreadServer(settings, clock=clock).start()
    try:
        async with Api(server.url) as a, Api(server.url) as b:
            alice, bob = await a.signup(), await b.signup()
            cid = (await alice.chat_with(bob.username))["chat_id"]
            assert (await alice.post(f"/api/chats/{cid}/messages", json={"content": "one"})).status_code == 201
            up = await granted_upload(alice, cid, b"two")
            assert (await send_file(alice, cid, up["file_id"])).status_code == 201
            spare = await granted_upload(alice, cid, b"spare")
            assert (await alice.post(f"/api/chats/{cid}/messages", json={"content": "three"})).status_code == 201
            r = await alice.post(f"/api/chats/{cid}/messages", json={"content": "four"})
            assert r.status_code == 429 and error_code(r) == "quota_exceeded"
            r = await send_file(alice, cid, spare["file_id"])
            assert r.status_code == 429 and error_code(r) == "quota_exceeded"
            assert (await grant(alice, cid, 3)).status_code == 429
            me = await usage(alice)
            assert me["usage"] == {"messages_today": 3, "storage_bytes": 3}
            assert (await alice.history(cid))["messages"][-1]["content"] == "three"
            # to the next 00:00 UTC
            clock.advance((86_400_000 - clock.now_ms() % 86_400_000) / 1000 + 1)
            assert (await usage(alice))["usage"]["messages_today"] == 0
            assert (await alice.post(f"/api/chats/{cid}/messages", json={"content": "new day"})).status_code == 201
            assert (await usage(alice))["usage"] == {"messages_today": 1, "storage_bytes": 3}
    finally:
        server.stop()


async def test_premium_tier_limits(make_server: Callable[..., ThreadServer]) -> None:
    """A premium account gets no daily limit, 5 GB of storage and 25 MB files (the defaults)."""
    from stratochat.adapters.store.sqlite import SqliteStore

    server = make_server(port=0)
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        assert (await grant(alice, cid, 3 * 1024 * 1024, ct="application/pdf")).status_code == 413
        store = SqliteStore(server.settings.database_path, FakeClock(), purge_interval_s=0)
        await store.start()
        try:
            await store.set_premium(alice.user["user_id"], True)
        finally:
            await store.close()
        me = await usage(alice)
        assert me["user"]["is_premium"] is True
        assert me["limits"] == {"daily_messages": None, "storage_bytes": 5_368_709_120, "max_file_bytes": 26_214_400}
        assert (await grant(alice, cid, 3 * 1024 * 1024, ct="application/pdf")).status_code == 201
        assert (await grant(alice, cid, 26_214_401, ct="application/pdf")).status_code == 413


def test_tier_defaults() -> None:
    """Free: 1,000 messages a day, 50 MB, 2 MB files; premium: unlimited, 5 GB, 25 MB; burst 10/s, 30."""
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.free_daily_messages, s.free_storage_bytes, s.free_max_file_bytes) == (1000, 52_428_800, 2_097_152)
    assert (s.premium_daily_messages, s.premium_storage_bytes, s.premium_max_file_bytes) == (
        None,
        5_368_709_120,
        26_214_400,
    )
    assert (s.burst_rate, s.burst_size, s.file_url_ttl) == (10, 30, 300)


def test_content_type_setting_is_checked() -> None:
    """STRATOCHAT_FILE_CONTENT_TYPES is a comma-separated list of media types; a typo fails at start-up."""
    assert Settings(_env_file=None, file_content_types="image/png, text/plain").file_content_types  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not a media type"):
        Settings(_env_file=None, file_content_types="image/png,png")  # type: ignore[call-arg]


@pytest.fixture
async def s3_server(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ThreadServer]
) -> ThreadServer:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    bucket = f"files-{uuid.uuid4().hex[:16]}"
    async with aioboto3.Session().client("s3", region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
    return make_server(port=0, s3_bucket_name=bucket, aws_default_region="us-east-1", secret_key="k" * 48)


async def test_s3_files_end_to_end(s3_server: ThreadServer, moto_endpoint: str) -> None:
    """With S3 the browser uploads to the bucket and downloads from it; an object of another size is refused."""
    async with Api(s3_server.url) as a, Api(s3_server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        r = await grant(alice, cid, len(PNG))
        up = r.json()["upload"]
        assert r.status_code == 201 and up["url"].startswith(moto_endpoint)
        assert up["fields"]["key"] == f"uploads/{up['file_id']}" and "policy" in up["fields"]
        assert (await upload(up, PNG)).status_code == 204
        assert (await send_file(alice, cid, up["file_id"], caption="look")).status_code == 201
        r = await bob.get(f"/api/files/{up['file_id']}")
        assert r.status_code == 302 and r.headers["location"].startswith(moto_endpoint)
        got = await fetch(bob, up["file_id"])
        assert got.content == PNG and got.headers["content-disposition"].startswith("inline;")
        # moto stores a body the policy forbids: the server checks the real size before accepting.
        short = (await grant(alice, cid, 100)).json()["upload"]
        assert (await upload(short, b"x" * 10)).is_success
        r = await send_file(alice, cid, short["file_id"])
        assert r.status_code == 400 and "10 bytes" in r.json()["error"]["detail"]
        assert (await usage(alice))["usage"]["storage_bytes"] == len(PNG)
        page = await alice.get("/")
        csp = page.headers["content-security-policy"]
        assert f"connect-src 'self' {moto_endpoint}" in csp and f"{moto_endpoint}" in csp.split("img-src")[1]
        ready = await alice.http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["backends"]["files"] == "ok"
        assert (await alice.http.post("/blobs/upload?token=x")).status_code == 404  # no embedded store


def test_users_show_prints_storage_and_limits(tmp_path: Path) -> None:
    """`stratochat users show` prints the account's storage usage and its tier's limits."""
    from tests.test_cli import run

    data = tmp_path / "data"
    assert run(["users", "create", "shown", "--password", "long-enough-pw"], data).returncode == 0
    out = run(["users", "show", "shown"], data).stdout
    for line in ("storage bytes:  0", "daily limit:    1000", "storage limit:  52428800", "max file bytes: 2097152"):
        assert line in out, out
    assert run(["users", "set-premium", "shown"], data).returncode == 0
    out = run(["users", "show", "shown"], data).stdout
    for line in ("daily limit:    unlimited", "storage limit:  5368709120", "max file bytes: 26214400"):
        assert line in out, out


async def test_grant_urls_use_the_public_origin(make_server: Callable[..., ThreadServer]) -> None:
    """With STRATOCHAT_PUBLIC_URL set, upload and download URLs are absolute on that origin."""
    server = make_server(port=0, public_url="https://chat.example.com/ignored/path")
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        up = (await grant(alice, cid, 3)).json()["upload"]
        assert up["url"].startswith("https://chat.example.com/blobs/upload?token=")
        local = {**up, "url": up["url"].replace("https://chat.example.com", server.url)}
        assert (await upload(local, b"abc")).status_code == 204
        assert (await send_file(alice, cid, up["file_id"])).status_code == 201
        r = await bob.get(f"/api/files/{up['file_id']}")
        assert r.status_code == 302 and r.headers["location"].startswith("https://chat.example.com/blobs/download?")


async def test_upload_grants_meet_the_burst_limit(make_server: Callable[..., ThreadServer]) -> None:
    """Upload grants beyond the per-user burst are rate_limited with Retry-After; nothing is recorded."""
    server = make_server(port=0, burst_rate=0.01, burst_size=2)
    async with Api(server.url) as a, Api(server.url) as b:
        alice, bob = await a.signup(), await b.signup()
        cid = (await alice.chat_with(bob.username))["chat_id"]
        assert [(await grant(alice, cid, 3)).status_code for _ in range(2)] == [201, 201]
        r = await grant(alice, cid, 3)
        assert r.status_code == 429 and error_code(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
