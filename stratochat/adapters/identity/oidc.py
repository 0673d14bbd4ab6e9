"""``OidcIdentityProvider``: any OpenID Connect issuer, Amazon Cognito included.

How it differs from the port: the provider's metadata comes from discovery (fetched on first use, kept
after success, retried after failure); Authlib builds the protocol messages (authorization URL, PKCE
challenge, token request, client authentication), PyJWT checks the ID token, httpx does the I/O. Only
asymmetric signatures are accepted (never ``none`` or a MAC keyed with the client secret).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.common.urls import add_params_to_uri  # type: ignore[import-untyped]
from authlib.oauth2.auth import ClientAuth  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from ...core.clock import SystemClock
from ...core.errors import BadRequest, Unauthorized, Unavailable
from ...core.ports import Clock, LoginStart, VerifiedIdentity
from ...settings import IdentityConfig

log = logging.getLogger("stratochat.oidc")

ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Wall-clock tolerance for exp/iat, seconds: the provider's clock and ours may disagree a little.
DEFAULT_LEEWAY_S = 60.0


def _error_code(payload: object) -> str:
    """An OAuth error code from a response, reduced to its safe alphabet (it ends up in our error detail)."""
    raw = payload.get("error") if isinstance(payload, dict) else None
    return re.sub(r"[^a-z0-9_]", "", raw.lower())[:64] if isinstance(raw, str) else ""


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        log.warning("identity provider unreachable: %s %s: %s", what, url, exc)
        raise Unavailable(f"the identity provider did not answer ({what}); try again shortly") from exc
    try:
        body = response.json() if response.status_code == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        log.warning(
            "identity provider answered %s with HTTP %s and no JSON object: %s", what, response.status_code, url
        )
        raise Unavailable(f"the identity provider's {what} could not be read; try again shortly")
    return body


class JwksCache:
    """The issuer's signing keys (its JWKS), by ``kid``.

    An unknown ``kid`` refetches the set at once: that is how a key rotation shows. A refetch that still
    lacks the ``kid`` starts a cooldown during which unknown kids are refused without fetching, so tokens
    with made-up kids cannot make us hammer the provider. The set is also refreshed once it is
    ``max_age_s`` old, so withdrawn keys stop verifying. Concurrent misses share one fetch."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        jwks_uri: str,
        *,
        clock: Clock | None = None,
        cooldown_s: float = 30.0,
        max_age_s: float = 3600.0,
    ) -> None:
        self._http = http
        self._uri = jwks_uri
        self._clock = clock or SystemClock()
        self._cooldown_s = cooldown_s
        self._max_age_s = max_age_s
        self._keys: list[dict[str, Any]] = []
        self._fetched_at: float | None = None
        self._fetches = 0
        self._cooldown_until = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def fetches(self) -> int:
        """How many times the set was fetched (tests check the rate limit with it)."""
        return self._fetches

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        fetched = False
        if self._fetched_at is None or self._clock.monotonic() - self._fetched_at >= self._max_age_s:
            await self._refresh(self._fetched_at)
            fetched = True
        jwk = self._pick(kid)
        if jwk is None and not fetched and self._clock.monotonic() >= self._cooldown_until:
            await self._refresh(self._fetched_at)
            fetched = True
            jwk = self._pick(kid)
        if jwk is None and fetched:
            self._cooldown_until = self._clock.monotonic() + self._cooldown_s
        if jwk is None:
            raise Unauthorized("identity token refused: signed with a key the issuer does not publish")
        if jwk.get("alg") not in (None, alg):
            raise Unauthorized("identity token refused: its algorithm does not match its key")
        try:
            return jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise Unauthorized("identity token refused: its algorithm does not match its key") from exc

    def _pick(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            # Without a kid, only an issuer with a single signing key is unambiguous.
            return self._keys[0] if len(self._keys) == 1 else None
        return next((k for k in self._keys if k.get("kid") == kid), None)

    async def _refresh(self, seen: float | None) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another caller refreshed while we waited
            body = await _get_json(self._http, self._uri, "signing keys")
            keys = body.get("keys")
            if not isinstance(keys, list):
                raise Unavailable("the identity provider's signing keys could not be read; try again shortly")
            # Encryption keys never verify signatures.
            self._keys = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]
            self._fetched_at = self._clock.monotonic()
            self._fetches += 1


class IdTokenValidator:
    """Checks an ID token as OpenID Connect Core 3.1.3.7 asks, and Cognito's ``token_use``."""

    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        client_id: str,
        algorithms: Sequence[str] = ASYMMETRIC_ALGS,
        leeway_s: float = DEFAULT_LEEWAY_S,
        require_token_use: bool = False,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._client_id = client_id
        self._algorithms = tuple(a for a in algorithms if a in ASYMMETRIC_ALGS)
        self._leeway_s = leeway_s
        self._require_token_use = require_token_use

    async def validate(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The verified claims; ``Unauthorized`` (saying which check failed) otherwise."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("identity token refused: it is not a well-formed JWT") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise Unauthorized(f"identity token refused: algorithm {str(alg)[:16]!r} is not accepted")
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None, alg)
        try:
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=[alg],
                audience=self._client_id,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("identity token refused: it has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("identity token refused: it was issued to another client (aud)") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("identity token refused: it comes from another issuer (iss)") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("identity token refused: its signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"identity token refused: {exc}") from exc
        aud = claims["aud"]
        azp = claims.get("azp")
        if (isinstance(aud, list) and len(aud) > 1 and azp is None) or azp not in (None, self._client_id):
            raise Unauthorized("identity token refused: it was issued to another client (azp)")
        if (self._require_token_use or "token_use" in claims) and claims.get("token_use") != "id":
            raise Unauthorized("identity token refused: it is not an ID token (token_use)")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise Unauthorized("identity token refused: it does not belong to this sign-in (nonce)")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise Unauthorized("identity token refused: it names no subject (sub)")
        return claims


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What discovery (``/.well-known/openid-configuration``) told us."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    token_auth_methods: tuple[str, ...]
    id_token_algs: tuple[str, ...]

    @classmethod
    def parse(cls, doc: Mapping[str, Any], expected_issuer: str, fallback: Mapping[str, str]) -> ProviderMetadata:
        issuer = doc.get("issuer")
        # OpenID Connect Discovery 4.3: the document must name the issuer we asked (mix-up defence).
        if not isinstance(issuer, str) or issuer.rstrip("/") != expected_issuer.rstrip("/"):
            raise Unavailable("the identity provider's metadata names another issuer; check OIDC_ISSUER_URL")

        def url(name: str, required: bool = True) -> str | None:
            value = doc.get(name) or fallback.get(name)
            if isinstance(value, str) and value.startswith(("https://", "http://")):
                return value
            if required:
                raise Unavailable(f"the identity provider's metadata has no {name}")
            return None

        def strings(name: str) -> tuple[str, ...]:
            value = doc.get(name)
            return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

        return cls(
            issuer=issuer,
            authorization_endpoint=url("authorization_endpoint") or "",
            token_endpoint=url("token_endpoint") or "",
            jwks_uri=url("jwks_uri") or "",
            end_session_endpoint=url("end_session_endpoint", required=False),
            token_auth_methods=strings("token_endpoint_auth_methods_supported"),
            id_token_algs=strings("id_token_signing_alg_values_supported"),
        )


class OidcIdentityProvider:
    def __init__(
        self,
        config: IdentityConfig,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        jwks_cooldown_s: float = 30.0,
        leeway_s: float = DEFAULT_LEEWAY_S,
        timeout_s: float = 10.0,
    ) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._http = http
        self._owns_http = http is None
        self._jwks_cooldown_s = jwks_cooldown_s
        self._leeway_s = leeway_s
        self._timeout_s = timeout_s
        self._meta: tuple[ProviderMetadata, IdTokenValidator] | None = None
        self._meta_lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def issuer(self) -> str:
        return self._config.issuer

    async def start(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False)

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("OidcIdentityProvider used before start() or after close()")
        return self._http

    async def metadata(self) -> tuple[ProviderMetadata, IdTokenValidator]:
        if self._meta is not None:
            return self._meta
        async with self._meta_lock:
            if self._meta is None:
                http = self._client()
                doc = await _get_json(http, self._config.discovery_url, "metadata")
                fallback: dict[str, str] = {}
                if self._config.cognito_logout_url:
                    # Cognito's hosted UI lives on COGNITO_DOMAIN, should its discovery leave them out.
                    base = self._config.cognito_logout_url.removesuffix("/logout")
                    fallback = {
                        "authorization_endpoint": f"{base}/oauth2/authorize",
                        "token_endpoint": f"{base}/oauth2/token",
                    }
                meta = ProviderMetadata.parse(doc, self._config.issuer, fallback)
                algs = [a for a in meta.id_token_algs if a in ASYMMETRIC_ALGS] or ["RS256"]
                validator = IdTokenValidator(
                    JwksCache(http, meta.jwks_uri, clock=self._clock, cooldown_s=self._jwks_cooldown_s),
                    issuer=meta.issuer,
                    client_id=self._config.client_id,
                    algorithms=algs,
                    leeway_s=self._leeway_s,
                    require_token_use=self._config.kind == "cognito",
                )
                self._meta = (meta, validator)
        return self._meta

    async def begin_login(self, redirect_uri: str) -> LoginStart:
        meta, _ = await self.metadata()
        state, nonce = generate_token(43), generate_token(43)
        verifier = generate_token(64)  # RFC 7636: 43-128 unreserved characters
        url = prepare_grant_uri(
            meta.authorization_endpoint,
            self._config.client_id,
            "code",
            redirect_uri,
            " ".join(self._config.scopes),
            state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return LoginStart(url=str(url), state=state, nonce=nonce, code_verifier=verifier)

    def _auth_method(self, meta: ProviderMetadata) -> str:
        if not self._config.client_secret:
            return "none"
        methods = meta.token_auth_methods
        # client_secret_basic is the default when the provider does not say (RFC 8414).
        if not methods or "client_secret_basic" in methods or "client_secret_post" not in methods:
            return "client_secret_basic"
        return "client_secret_post"

    async def finish_login(self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str) -> VerifiedIdentity:
        meta, validator = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        auth = ClientAuth(self._config.client_id, self._config.client_secret, self._auth_method(meta))
        uri, headers, body = auth.prepare("POST", meta.token_endpoint, headers, body)
        try:
            response = await self._client().post(uri, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("identity provider unreachable: token endpoint: %s", exc)
            raise Unavailable("the identity provider did not answer; try signing in again") from exc
        try:
            payload: object = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 500:
            raise Unavailable("the identity provider failed; try signing in again")
        if response.status_code != 200 or not isinstance(payload, dict):
            code_name = _error_code(payload) or f"HTTP {response.status_code}"
            raise BadRequest(f"the identity provider refused the sign-in code ({code_name}); start again at /login")
        id_token = payload.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("identity token refused: the provider returned none (is 'openid' in the scopes?)")
        claims = await validator.validate(id_token, nonce=nonce)
        tokens = {k: v for k in ("id_token", "access_token", "refresh_token") if isinstance(v := payload.get(k), str)}
        return VerifiedIdentity(issuer=meta.issuer, subject=claims["sub"], claims=claims, tokens=tokens)

    async def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        cid = self._config.client_id
        if self._config.cognito_logout_url:
            # Cognito's own form: https://<domain>/logout?client_id=..&logout_uri=.. (a registered sign-out URL).
            return str(
                add_params_to_uri(
                    self._config.cognito_logout_url, [("client_id", cid), ("logout_uri", post_logout_redirect_uri)]
                )
            )
        try:
            meta, _ = await self.metadata()
        except Unavailable:
            return None  # the local session is over either way
        if meta.end_session_endpoint is None:
            return None
        params = [("client_id", cid), ("post_logout_redirect_uri", post_logout_redirect_uri)]
        if id_token:
            params.append(("id_token_hint", id_token))
        return str(add_params_to_uri(meta.end_session_endpoint, params))
