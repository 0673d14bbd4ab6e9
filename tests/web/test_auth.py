"""Local accounts and sessions over real HTTP."""

from __future__ import annotations

import asyncio

import httpx

from tests.client import Api
from tests.services.server import ThreadServer


def error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "detail"}, body
    assert body["error"]["detail"]
    return str(body["error"]["code"])


async def test_register_login_me_logout(server: ThreadServer) -> None:
    """The full local-account cycle; the cookie is HttpOnly and SameSite=Lax and the token works too."""
    async with Api(server.url) as c:
        r = await c.http.post("/api/auth/register", json={"username": "Alice_1", "password": "s3cret-pass"})
        assert r.status_code == 201
        assert r.json()["user"]["username"] == "alice_1"
        assert r.json()["user"]["is_premium"] is False
        r = await c.http.post("/api/auth/login", json={"username": "ALICE_1", "password": "s3cret-pass"})
        assert r.status_code == 200
        token = r.json()["token"]
        cookie = r.headers["set-cookie"].lower()
        assert "session_id=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie  # plain HTTP
        me = await c.http.get("/api/me")  # the cookie alone authenticates
        assert me.status_code == 200 and me.json()["user"]["username"] == "alice_1"
        assert me.json()["limits"]["daily_messages"] == 1000
        c.http.cookies.clear()
        me = await c.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        r = await c.http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 204
        me = await c.http.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401 and error_code(me) == "unauthorized"


async def test_secure_cookie_behind_https_proxy(server: ThreadServer) -> None:
    """X-Forwarded-Proto: https makes the session cookie Secure."""
    async with Api(server.url) as c:
        await c.http.post("/api/auth/register", json={"username": "carol", "password": "s3cret-pass"})
        r = await c.http.post(
            "/api/auth/login",
            json={"username": "carol", "password": "s3cret-pass"},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower()


async def test_bad_registrations(server: ThreadServer) -> None:
    """Malformed names, passwords and bodies get the contract's error shape; taken names get 409."""
    async with Api(server.url) as c:
        cases = [
            ({"username": "ab", "password": "longenough"}, 400),
            ({"username": "bad name", "password": "longenough"}, 400),
            ({"username": "x" * 33, "password": "longenough"}, 400),
            ({"username": "okname", "password": "short"}, 400),
            ({"username": "okname", "password": "p" * 129}, 400),
            ({"username": "okname"}, 422),
            ({"username": 5, "password": "longenough"}, 422),
        ]
        for body, status in cases:
            r = await c.http.post("/api/auth/register", json=body)
            assert r.status_code == status, (body, r.text)
            assert error_code(r) == "bad_request"
        r = await c.http.post("/api/auth/register", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "bad_request"
        r = await c.http.post("/api/auth/register", json=["a", "b"])
        assert r.status_code == 422 and error_code(r) == "bad_request"
        assert (
            await c.http.post("/api/auth/register", json={"username": "taken", "password": "longenough"})
        ).status_code == 201
        r = await c.http.post("/api/auth/register", json={"username": "TAKEN", "password": "longenough"})
        assert r.status_code == 409 and error_code(r) == "conflict"


async def test_wrong_password_and_unknown_user_look_alike(server: ThreadServer) -> None:
    async with Api(server.url) as c:
        await c.http.post("/api/auth/register", json={"username": "dave", "password": "s3cret-pass"})
        wrong = await c.http.post("/api/auth/login", json={"username": "dave", "password": "nope-nope"})
        missing = await c.http.post("/api/auth/login", json={"username": "nobody", "password": "nope-nope"})
        assert wrong.status_code == missing.status_code == 401
        assert wrong.json() == missing.json()


async def test_login_limiter_counts_only_failures(make_server) -> None:  # type: ignore[no-untyped-def]
    """Correct logins never lock out; failures lock the attacked account only, with Retry-After."""
    server = make_server(login_max_failures=3)
    async with Api(server.url) as c:
        for name in ("erin", "frank"):
            await c.http.post("/api/auth/register", json={"username": name, "password": "s3cret-pass"})
        for _ in range(10):
            r = await c.http.post("/api/auth/login", json={"username": "erin", "password": "s3cret-pass"})
            assert r.status_code == 200
        for _ in range(3):
            r = await c.http.post("/api/auth/login", json={"username": "erin", "password": "wrong-pass"})
            assert r.status_code == 401
        r = await c.http.post("/api/auth/login", json={"username": "erin", "password": "s3cret-pass"})
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1
        r = await c.http.post("/api/auth/login", json={"username": "frank", "password": "s3cret-pass"})
        assert r.status_code == 200


async def test_session_expires_and_slides(make_server) -> None:  # type: ignore[no-untyped-def]
    """A 1 s session dies when idle, but each use pushes its expiry out."""
    server = make_server(session_ttl=1.0)
    async with Api(server.url) as c:
        await c.signup()
        for _ in range(6):  # 1.8 s of activity, longer than the lifetime
            await asyncio.sleep(0.3)
            assert (await c.get("/api/me")).status_code == 200
        await asyncio.sleep(1.3)
        r = await c.get("/api/me")
        assert r.status_code == 401 and error_code(r) == "unauthorized"


async def test_unauthenticated_and_unknown_routes(server: ThreadServer) -> None:
    async with Api(server.url) as c:
        for path in ("/api/me", "/api/chats"):
            r = await c.http.get(path)
            assert r.status_code == 401 and error_code(r) == "unauthorized"
        r = await c.http.get("/api/me", headers={"Authorization": "Bearer not-a-session"})
        assert r.status_code == 401
        r = await c.http.get("/api/nope")
        assert r.status_code == 404 and error_code(r) == "not_found"
        r = await c.http.delete("/api/auth/login")
        assert r.status_code == 405 and error_code(r) == "method_not_allowed"


async def test_cross_site_cookie_post_refused(server: ThreadServer) -> None:
    """A cookie-authenticated state change from a foreign Origin is refused (CSRF)."""
    async with Api(server.url) as c:
        await c.http.post("/api/auth/register", json={"username": "gina", "password": "s3cret-pass"})
        await c.http.post("/api/auth/login", json={"username": "gina", "password": "s3cret-pass"})
        r = await c.http.post("/api/chats", json={"members": ["x"]}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and error_code(r) == "forbidden"


async def test_oversized_body_refused(server: ThreadServer) -> None:
    async with Api(server.url) as c:
        r = await c.http.post(
            "/api/auth/register", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and error_code(r) == "too_large"


async def test_health(server: ThreadServer) -> None:
    async with Api(server.url) as c:
        assert (await c.http.get("/healthz")).status_code == 200
        r = await c.http.get("/readyz")
        assert r.status_code == 200 and r.json()["backends"] == {"store": "ok", "broker": "ok"}


async def test_signups_are_rate_limited_per_address(make_server) -> None:  # type: ignore[no-untyped-def]
    """Sign-ups from one address beyond the burst get 429 rate_limited with Retry-After; nothing is created."""
    server = make_server(signup_rate=1, signup_burst=2)
    async with Api(server.url) as c:
        for name in ("first", "second"):
            r = await c.http.post("/api/auth/register", json={"username": name, "password": "s3cret-pass"})
            assert r.status_code == 201
        r = await c.http.post("/api/auth/register", json={"username": "third", "password": "s3cret-pass"})
        assert r.status_code == 429 and error_code(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
        r = await c.http.post("/api/auth/login", json={"username": "third", "password": "s3cret-pass"})
        assert r.status_code == 401
