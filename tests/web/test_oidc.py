"""Sign-in through a real OpenID Connect provider (oidc-provider on node), driven with an HTTP client."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.services.oidc import CLIENT_ID, OidcStack, provider_sign_in
from tests.services.server import ThreadServer, free_port
from tests.web.test_auth import error_code


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=False, timeout=15.0)


async def test_login_signs_in_with_the_provider(oidc_stack: OidcStack) -> None:
    """/login -> provider -> /authorize sets an HttpOnly session cookie, redirects to / and the user id is sub."""
    async with client() as c:
        r = await oidc_stack.sign_in(c, "alice")
        assert r.status_code == 302 and r.headers["location"] == "/"
        cookies = r.headers.get_list("set-cookie")
        session = next(h for h in cookies if h.startswith("session_id="))
        assert "httponly" in session.lower() and "samesite=lax" in session.lower()
        # The one-time login state is cleared.
        assert any(h.startswith("stratochat_login=") and "max-age=0" in h.lower() for h in cookies)
        me = await c.get(oidc_stack.server.url + "/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"] == {"user_id": "alice", "username": "alice", "is_premium": False}


async def test_login_redirect_carries_pkce_state_and_nonce(oidc_stack: OidcStack) -> None:
    """/login answers 302 to the provider with code flow, S256 PKCE, state and nonce, and a short-lived state cookie."""
    async with client() as c:
        r = await c.get(oidc_stack.server.url + "/login")
        assert r.status_code == 302
        location = r.headers["location"]
        assert location.startswith(oidc_stack.provider.issuer + "/auth?")
        q = query(location)
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
        assert q["redirect_uri"] == oidc_stack.server.url + "/authorize"
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert len(q["state"]) >= 32 and len(q["nonce"]) >= 32 and q["state"] != q["nonce"]
        assert "openid" in q["scope"].split()
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith("stratochat_login=") and "httponly" in cookie and "path=/authorize" in cookie
        assert "max-age=600" in cookie
        # A second login gets fresh values.
        again = query((await c.get(oidc_stack.server.url + "/login")).headers["location"])
        assert again["state"] != q["state"] and again["nonce"] != q["nonce"]


async def test_returning_user_is_linked_not_duplicated(oidc_stack: OidcStack) -> None:
    """Signing in again (another browser) reaches the same user with a new session."""
    async with client() as a, client() as b:
        await oidc_stack.sign_in(a, "carol")
        await oidc_stack.sign_in(b, "carol")
        me_a = (await a.get(oidc_stack.server.url + "/api/me")).json()["user"]
        me_b = (await b.get(oidc_stack.server.url + "/api/me")).json()["user"]
        assert me_a == me_b and me_a["user_id"] == "carol"
        assert a.cookies["session_id"] != b.cookies["session_id"]


async def test_taken_username_is_deduplicated(oidc_stack: OidcStack) -> None:
    """A provider user whose name a local account holds gets a suffixed name; both accounts stay apart."""
    async with client() as c:
        r = await c.post(
            oidc_stack.server.url + "/api/auth/register", json={"username": "dave", "password": "pw-123456"}
        )
        assert r.status_code == 201
        local_id = r.json()["user"]["user_id"]
        await oidc_stack.sign_in(c, "dave")
        me = (await c.get(oidc_stack.server.url + "/api/me")).json()["user"]
        assert me["username"] == "dave-2" and me["user_id"] == "dave" != local_id


async def test_premium_group_grants_premium(oidc_stack: OidcStack) -> None:
    """Membership of the premium group (cognito:groups) makes the user premium, with premium limits."""
    async with client() as c:
        await oidc_stack.sign_in(c, "premium-pat")
        me = (await c.get(oidc_stack.server.url + "/api/me")).json()
        assert me["user"]["is_premium"] is True
        assert me["limits"]["daily_messages"] is None


async def test_bad_state_is_refused(oidc_stack: OidcStack) -> None:
    """/authorize without the login cookie, with another state or a forged cookie answers 400 in the error shape."""
    url = oidc_stack.server.url
    async with client() as c:
        r = await c.get(url + "/authorize", params={"code": "x", "state": "y"})
        assert r.status_code == 400 and error_code(r) == "bad_request"
        r = await c.get(url + "/login")
        state = query(r.headers["location"])["state"]
        r = await c.get(url + "/authorize", params={"code": "x", "state": state + "x"})
        assert r.status_code == 400 and error_code(r) == "bad_request"
        r = await c.get(url + "/login")
        state = query(r.headers["location"])["state"]
        payload, mac = c.cookies["stratochat_login"].split(".")
        c.cookies.set("stratochat_login", payload + "." + mac[::-1], domain="127.0.0.1", path="/authorize")
        r = await c.get(url + "/authorize", params={"code": "x", "state": state})
        assert r.status_code == 400 and error_code(r) == "bad_request"
        r = await c.get(url + "/authorize")
        assert r.status_code == 400 and error_code(r) == "bad_request"


async def test_provider_error_and_missing_code_are_refused(oidc_stack: OidcStack) -> None:
    """A callback carrying error=access_denied, or no code, or another issuer's iss answers 400."""
    url = oidc_stack.server.url
    async with client() as c:
        for extra, says in (
            ({"error": "access_denied"}, "access_denied"),
            ({}, "no code"),
            ({"code": "x", "iss": "https://evil.example"}, "another identity provider"),
        ):
            state = query((await c.get(url + "/login")).headers["location"])["state"]
            r = await c.get(url + "/authorize", params={"state": state, **extra})
            assert r.status_code == 400 and error_code(r) == "bad_request", (extra, r.text)
            assert says in r.json()["error"]["detail"]


async def test_replayed_code_is_refused(oidc_stack: OidcStack) -> None:
    """A code already exchanged cannot sign in again, even with the login state put back."""
    async with client() as c:
        r = await c.get(oidc_stack.server.url + "/login")
        saved = c.cookies["stratochat_login"]
        callback = await provider_sign_in(c, r.headers["location"], "erin", oidc_stack.callback)
        assert (await c.get(callback)).status_code == 302
        c.cookies.clear()
        c.cookies.set("stratochat_login", saved, domain="127.0.0.1", path="/authorize")
        r = await c.get(callback)
        assert r.status_code == 400 and error_code(r) == "bad_request"
        assert "session_id" not in c.cookies


async def test_logout_ends_local_and_provider_sessions(oidc_stack: OidcStack) -> None:
    """/logout kills the session, clears the cookie and sends the browser to end the provider's session too."""
    url, issuer = oidc_stack.server.url, oidc_stack.provider.issuer
    async with client() as c:
        await oidc_stack.sign_in(c, "frank")
        token = c.cookies["session_id"]
        r = await c.get(url + "/logout")
        assert r.status_code == 302
        end = r.headers["location"]
        assert end.startswith(issuer + "/session/end?")
        q = query(end)
        assert q["client_id"] == CLIENT_ID and q["post_logout_redirect_uri"] == url + "/" and q["id_token_hint"]
        assert any(h.startswith("session_id=") and "max-age=0" in h.lower() for h in r.headers.get_list("set-cookie"))
        me = await c.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
        # Confirm at the provider; it returns to our origin.
        page = await c.get(end)
        assert page.status_code == 200, (page.status_code, page.headers, page.text[:2000])
        action = urljoin(end, re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = await c.post(action, data={"xsrf": xsrf, "logout": "yes"})
        while r.status_code in (302, 303) and not r.headers["location"].startswith(url):
            r = await c.get(urljoin(action, r.headers["location"]))
        assert r.headers["location"] == url + "/"
        # The provider forgot us: a new login asks for the password again.
        r = await c.get(url + "/login")
        r = await c.get(r.headers["location"])
        page = await c.get(urljoin(str(r.url), r.headers["location"]))
        assert 'name="login"' in page.text


async def test_logout_without_session_goes_home(oidc_stack: OidcStack) -> None:
    """/logout with no session just clears the cookie and redirects to /."""
    async with client() as c:
        r = await c.get(oidc_stack.server.url + "/logout")
        assert r.status_code == 302 and r.headers["location"] == "/"


async def test_provider_key_rotation(oidc_stack: OidcStack) -> None:
    """After the provider rotates its signing key (new kid), sign-in still works: the keys are refetched."""
    async with client() as c:
        await oidc_stack.sign_in(c, "gina")
    old_kid = oidc_stack.provider.jwk["kid"]
    oidc_stack.provider.restart(new_key=True)
    assert oidc_stack.provider.jwk["kid"] != old_kid
    async with client() as c:
        r = await oidc_stack.sign_in(c, "gina")
        assert r.status_code == 302 and r.headers["location"] == "/", r.text
        assert (await c.get(oidc_stack.server.url + "/api/me")).json()["user"]["user_id"] == "gina"


async def test_provider_down_answers_unavailable(oidc_stack: OidcStack) -> None:
    """With the provider unreachable, /login answers 503 in the error shape, not a 500."""
    oidc_stack.provider.stop()
    async with client() as c:
        r = await c.get(oidc_stack.server.url + "/login")
        assert r.status_code == 503 and error_code(r) == "unavailable"


async def test_public_url_and_forwarded_proto_shape_the_redirect_uri(make_oidc_stack: Callable[..., OidcStack]) -> None:
    """The redirect URI is STRATOCHAT_PUBLIC_URL + /authorize, else the origin as a trusted proxy saw it."""
    stack = make_oidc_stack(public_url="https://chat.example.com")
    async with client() as c:
        r = await c.get(stack.server.url + "/login")
        assert query(r.headers["location"])["redirect_uri"] == "https://chat.example.com/authorize"
    stack = make_oidc_stack()
    async with client() as c:
        r = await c.get(stack.server.url + "/login", headers={"X-Forwarded-Proto": "https"})
        port = urlsplit(stack.server.url).port
        assert query(r.headers["location"])["redirect_uri"] == f"https://127.0.0.1:{port}/authorize"
        assert "secure" in r.headers["set-cookie"].lower()


async def test_routes_absent_without_provider(make_server: Callable[..., ThreadServer]) -> None:
    """Without an identity provider, /login and /authorize answer 404 not_found and /api/config lists none."""
    server = make_server(port=free_port())
    async with client() as c:
        for path in ("/login", "/authorize", "/logout"):
            r = await c.get(server.url + path)
            assert r.status_code == 404 and error_code(r) == "not_found"
        assert (await c.get(server.url + "/api/config")).json()["providers"] == []


async def test_api_config_lists_the_provider(make_oidc_stack: Callable[..., OidcStack]) -> None:
    """/api/config names the provider (STRATOCHAT_OIDC_NAME) and its login URL."""
    stack = make_oidc_stack(oidc_name="Acme SSO")
    async with client() as c:
        r = await c.get(stack.server.url + "/api/config")
        assert r.json()["providers"] == [{"id": "oidc", "name": "Acme SSO", "login_url": "/login"}]
