"""The ID token checks, with tokens signed here and a JWKS served by a tiny loopback server."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stratochat.adapters.identity.oidc import IdTokenValidator, JwksCache
from stratochat.core.clock import FakeClock
from stratochat.core.errors import Unauthorized

ISSUER = "https://idp.example.test"
CLIENT = "stratochat-client"
NONCE = "n-0123456789abcdef"


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str = "RS256"

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        jwk.update(kid=self.kid, use="sig", alg=self.alg)
        return jwk

    def sign(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT, "sub": "user-1", "iat": now, "exp": now + 300, "nonce": NONCE}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


def rsa_key(kid: str | None = None) -> SigningKey:
    return SigningKey(kid or uuid.uuid4().hex[:8], rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class JwksServer:
    keys: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    url: str = ""


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def key(jwks_server: JwksServer) -> SigningKey:
    k = rsa_key()
    jwks_server.keys.append(k.public_jwk())
    return k


def make_validator(
    http: httpx.AsyncClient, server: JwksServer, clock: FakeClock, **kw: Any
) -> tuple[IdTokenValidator, JwksCache]:
    cache = JwksCache(http, server.url, clock=clock, cooldown_s=30)
    return IdTokenValidator(cache, issuer=ISSUER, client_id=CLIENT, leeway_s=5, **kw), cache


async def refused(validator: IdTokenValidator, token: str, says: str, nonce: str = NONCE) -> None:
    with pytest.raises(Unauthorized) as info:
        await validator.validate(token, nonce=nonce)
    assert says in info.value.detail, info.value.detail


async def test_valid_token_passes(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """A token signed by a published key, for us, current and with our nonce yields its claims."""
    validator, _ = make_validator(http, jwks_server, clock)
    claims = await validator.validate(key.sign(email="a@example.test"), nonce=NONCE)
    assert claims["sub"] == "user-1" and claims["email"] == "a@example.test"


async def test_tampered_expired_wrong_audience_issuer_nonce_are_refused(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """Each failed check refuses the token and says which one failed."""
    validator, _ = make_validator(http, jwks_server, clock)
    header, payload, sig = key.sign().split(".")
    forged = jwt.utils.base64url_encode(json.dumps({"iss": ISSUER, "aud": CLIENT, "sub": "admin"}).encode()).decode()
    await refused(validator, f"{header}.{forged}.{sig}", "signature")
    await refused(validator, f"{header}.{payload}.{sig[:-4]}AAAA", "signature")
    await refused(validator, key.sign(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "expired")
    await refused(validator, key.sign(aud="someone-else"), "another client")
    await refused(validator, key.sign(iss="https://evil.example.test"), "another issuer")
    await refused(validator, key.sign(), "nonce", nonce="another-sign-in")
    await refused(validator, key.sign(nonce=None), "nonce")
    await refused(validator, key.sign(exp=None), "exp")
    await refused(validator, key.sign(aud=[CLIENT, "other"], azp="other"), "azp")
    await refused(validator, key.sign(aud=[CLIENT, "other"]), "azp")
    await refused(validator, "not-a-jwt", "well-formed")


async def test_unsafe_algorithms_are_refused(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """alg none, a MAC keyed with anything, and an algorithm the key is not for are refused."""
    validator, _ = make_validator(http, jwks_server, clock)
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "x", "iat": int(time.time()), "exp": int(time.time()) + 60}
    unsigned = jwt.encode({**claims, "nonce": NONCE}, "", algorithm="none", headers={"kid": key.kid})
    await refused(validator, unsigned, "algorithm")
    mac = jwt.encode({**claims, "nonce": NONCE}, "k" * 32, algorithm="HS256", headers={"kid": key.kid})
    await refused(validator, mac, "algorithm")
    other = SigningKey(key.kid, key.private, alg="RS512")  # the published JWK says RS256
    await refused(validator, other.sign(), "algorithm does not match")


async def test_ec_keys_verify(http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock) -> None:
    """ES256 tokens verify against an EC key of the JWKS."""
    k = SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()), alg="ES256")
    jwks_server.keys.append(k.public_jwk())
    validator, _ = make_validator(http, jwks_server, clock)
    assert (await validator.validate(k.sign(), nonce=NONCE))["sub"] == "user-1"


async def test_token_use_is_checked(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """A Cognito access token (token_use=access) is refused; for Cognito token_use=id is required."""
    validator, _ = make_validator(http, jwks_server, clock)
    await refused(validator, key.sign(token_use="access"), "token_use")
    assert await validator.validate(key.sign(token_use="id"), nonce=NONCE)
    cognito, _ = make_validator(http, jwks_server, clock, require_token_use=True)
    await refused(cognito, key.sign(), "token_use")


async def test_key_rotation_refetches_the_jwks(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """A token with a new kid makes the validator refetch the JWKS once, and then verifies."""
    validator, cache = make_validator(http, jwks_server, clock)
    await validator.validate(key.sign(), nonce=NONCE)
    assert cache.fetches == 1
    new = rsa_key()
    jwks_server.keys = [new.public_jwk()]  # the old key is withdrawn
    assert (await validator.validate(new.sign(sub="user-2"), nonce=NONCE))["sub"] == "user-2"
    assert cache.fetches == 2
    await validator.validate(new.sign(), nonce=NONCE)
    assert cache.fetches == 2  # cached by kid
    await refused(validator, key.sign(), "key the issuer does not publish")


async def test_unknown_kids_refetch_at_a_bounded_rate(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """Tokens with made-up kids cause one refetch, then none until the cooldown is over."""
    validator, cache = make_validator(http, jwks_server, clock)
    await validator.validate(key.sign(), nonce=NONCE)
    stranger = rsa_key()
    for _ in range(5):
        await refused(validator, stranger.sign(), "key the issuer does not publish")
    assert cache.fetches == 2 and jwks_server.requests == 2
    clock.advance(31)
    await refused(validator, stranger.sign(), "key the issuer does not publish")
    assert cache.fetches == 3
    # The provider publishing it later is picked up after the cooldown.
    jwks_server.keys.append(stranger.public_jwk())
    await refused(validator, stranger.sign(), "key the issuer does not publish")
    clock.advance(31)
    assert await validator.validate(stranger.sign(), nonce=NONCE)
    assert cache.fetches == 4


async def test_jwks_is_refreshed_when_old(
    http: httpx.AsyncClient, jwks_server: JwksServer, clock: FakeClock, key: SigningKey
) -> None:
    """After max age the set is fetched again, so a withdrawn key stops verifying even with a known kid."""
    validator, cache = make_validator(http, jwks_server, clock)
    await validator.validate(key.sign(), nonce=NONCE)
    jwks_server.keys = [rsa_key().public_jwk()]
    clock.advance(3601)
    await refused(validator, key.sign(), "key the issuer does not publish")
    assert cache.fetches == 2
