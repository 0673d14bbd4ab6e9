"""Sign-in through the identity provider (Cognito or any OpenID Connect issuer): ``/login``,
``/authorize`` (the callback), ``/logout``. Mounted only when one is configured.

Between ``/login`` and ``/authorize`` the login state (state, nonce, PKCE verifier, redirect URI) rides in
a short-lived HttpOnly cookie, MACed with SECRET_KEY, so any node can finish a login any node began.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from ...core.accounts import session_key
from ...core.errors import BadRequest, StratochatError
from ...core.identity import IdentityService
from ...settings import Settings
from ..deps import SESSION_COOKIE, get_services, token_of
from ..errors import response_for
from ..security import is_https
from .auth import set_session_cookie

router = APIRouter(include_in_schema=False)
log = logging.getLogger("stratochat.oidc")

LOGIN_COOKIE = "stratochat_login"
LOGIN_COOKIE_PATH = "/authorize"
# Long enough to type a password and pass a second factor at the provider, short enough to be useless later.
LOGIN_TTL_S = 600
NO_STORE = {"Cache-Control": "no-store"}


class LoginStateCodec:
    """``payload.mac``: the payload is base64url JSON with an expiry, the MAC HMAC-SHA256 under a key
    derived from SECRET_KEY for this one purpose (so it can never pass for another signed value)."""

    def __init__(self, secret: str, ttl_s: int = LOGIN_TTL_S) -> None:
        self._key = hmac.new(secret.encode(), b"stratochat/login-state/v1", hashlib.sha256).digest()
        self._ttl_s = ttl_s

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def dumps(self, data: dict[str, str], now_s: float) -> str:
        payload = base64.urlsafe_b64encode(orjson.dumps({**data, "exp": int(now_s) + self._ttl_s})).rstrip(b"=")
        return f"{payload.decode()}.{self._mac(payload)}"

    def loads(self, value: str | None, now_s: float) -> dict[str, Any] | None:
        """The data, or None when missing, forged, malformed or expired."""
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload.encode()).encode()):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int) or data["exp"] <= now_s:
            return None
        return data


@dataclass(frozen=True, slots=True)
class OidcLogin:
    """What the routes need, handed over as lifespan state by the composition root."""

    identity: IdentityService
    codec: LoginStateCodec


def _login(request: Request) -> OidcLogin:
    login: OidcLogin = request.state.oidc
    return login


def public_origin(request: Request) -> str:
    """STRATOCHAT_PUBLIC_URL, else the origin this request was sent to (its scheme as uvicorn saw it:
    X-Forwarded-Proto counts only from STRATOCHAT_FORWARDED_ALLOW_IPS)."""
    settings: Settings = request.state.settings
    if settings.public_url:
        return settings.public_url
    return f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"


def _now_s(request: Request) -> float:
    return get_services(request).clock.now_ms() / 1000


def _forget_login(request: Request, response: Response) -> Response:
    response.delete_cookie(
        LOGIN_COOKIE, path=LOGIN_COOKIE_PATH, httponly=True, samesite="lax", secure=is_https(request.scope)
    )
    return response


@router.get("/login")
async def login(request: Request) -> Response:
    oidc = _login(request)
    redirect_uri = public_origin(request) + "/authorize"
    start = await oidc.identity.begin_login(redirect_uri)
    state = {"state": start.state, "nonce": start.nonce, "verifier": start.code_verifier, "redirect_uri": redirect_uri}
    response = RedirectResponse(start.url, status_code=302, headers=NO_STORE)
    # SameSite=Lax: the provider sends the browser back with a top-level GET, which Lax cookies ride along.
    response.set_cookie(
        LOGIN_COOKIE,
        oidc.codec.dumps(state, _now_s(request)),
        max_age=LOGIN_TTL_S,
        path=LOGIN_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=is_https(request.scope),
    )
    return response


@router.get("/authorize")
async def authorize(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    iss: str | None = None,
) -> Response:
    oidc = _login(request)
    saved = oidc.codec.loads(request.cookies.get(LOGIN_COOKIE), _now_s(request))
    try:
        expected = saved.get("state") if saved else None
        if not isinstance(expected, str) or not state or not hmac.compare_digest(state.encode(), expected.encode()):
            raise BadRequest("sign-in state is missing, expired or does not match this browser; start again at /login")
        # RFC 9207: a provider that names itself in the response must be ours (mix-up defence).
        if iss is not None and iss.rstrip("/") != oidc.identity.provider.issuer.rstrip("/"):
            raise BadRequest("the sign-in response comes from another identity provider")
        if error is not None:
            reason = re.sub(r"[^a-z0-9_]", "", error.lower())[:64] or "error"
            raise BadRequest(f"the identity provider did not sign you in ({reason}); start again at /login")
        if not code or len(code) > 4096:
            raise BadRequest("the sign-in response has no code; start again at /login")
        assert saved is not None
        _, token, _ = await oidc.identity.finish_login(
            code,
            redirect_uri=str(saved["redirect_uri"]),
            code_verifier=str(saved["verifier"]),
            nonce=str(saved["nonce"]),
        )
    except StratochatError as exc:
        log.info("identity provider sign-in refused: %s", exc.detail)
        return _forget_login(request, response_for(exc))
    response = RedirectResponse("/", status_code=302, headers=NO_STORE)
    set_session_cookie(request, response, token)
    return _forget_login(request, response)


@router.get("/logout")
async def logout(request: Request) -> Response:
    """Ends the local session (cookie or bearer) and, for a session from the provider, the provider's too."""
    services = get_services(request)
    token, _ = token_of(request)
    target: str | None = None
    session = await services.accounts.check_session(session_key(token)) if token and len(token) <= 256 else None
    if session is not None:
        target = await _login(request).identity.end_session_url(session, public_origin(request) + "/")
        await services.accounts.logout(session)
    response = RedirectResponse(target or "/", status_code=302, headers=NO_STORE)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request.scope))
    return response
