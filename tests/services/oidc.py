"""A real OpenID Connect provider on loopback: panva oidc-provider (node), installed by scripts/test into
tests/services/oidc_provider/node_modules.

The provider needs the app's redirect URI before it starts, so tests pick the app's port first
(``oidc_stack`` does all of it). Keys are generated here and passed in, so a test can rotate them:
``restart(new_key=True)`` brings the provider back on the same port with a key of a new ``kid``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.services.server import ThreadServer, free_port, wait_http

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
CLIENT_ID = "stratochat"
CLIENT_SECRET = "stratochat-secret"
# Long and random enough for the SECRET_KEY guard (an identity provider is a cloud backend).
TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def rsa_jwk(kid: str | None = None) -> dict[str, Any]:
    """A fresh RSA signing key as a private JWK."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # PyJWT writes ["sign"]; the provider then could not verify its own tokens
    jwk.update(kid=kid or uuid.uuid4().hex[:12], use="sig", alg="RS256")
    return jwk


class OidcProvider:
    """``node provider.mjs`` as a child process, stopped by the fixture that started it."""

    def __init__(self, redirect_uris: Sequence[str], post_logout_redirect_uris: Sequence[str], log_path: Path) -> None:
        self.port = free_port()
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.log_path = log_path
        self.jwk = rsa_jwk()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OidcProvider:
        node = shutil.which("node")
        if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.fail("oidc-provider is not installed: run scripts/test (npm ci in tests/services/oidc_provider)")
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_REDIRECT_URIS": ",".join(self.redirect_uris),
            "OIDC_POST_LOGOUT_REDIRECT_URIS": ",".join(self.post_logout_redirect_uris),
            "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_JWKS": json.dumps({"keys": [self.jwk]}),
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=log, stderr=log)
        wait_http(self.issuer + "/.well-known/openid-configuration", timeout=30, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, *, new_key: bool = False) -> None:
        """Stop and start again on the same port (its sessions are lost); ``new_key`` rotates the key."""
        self.stop()
        if new_key:
            self.jwk = rsa_jwk()
        self.start()


async def provider_sign_in(client: httpx.AsyncClient, url: str, login: str, stop_at: str) -> str:
    """Follow ``url`` through the provider's dev login and consent forms, as a person would, until a
    redirect to ``stop_at`` (the app's callback), whose URL is returned without following it."""
    for _ in range(20):
        if url.startswith(stop_at):
            return url
        r = await client.get(url)
        while r.status_code == 200 and "<form" in r.text:
            action = urljoin(url, re.search(r'<form[^>]*action="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
            if 'name="login"' in r.text:
                r = await client.post(action, data={"prompt": "login", "login": login, "password": "any"})
            else:
                r = await client.post(action, data={"prompt": "consent"})
            url = action
        if r.status_code not in (302, 303):
            raise AssertionError(f"unexpected {r.status_code} from {url}: {r.text[:500]}")
        url = urljoin(url, r.headers["location"])
    raise AssertionError("the sign-in did not come back to the app")


@dataclass
class OidcStack:
    provider: OidcProvider
    server: ThreadServer

    @property
    def callback(self) -> str:
        return self.server.url + "/authorize"

    async def sign_in(self, client: httpx.AsyncClient, login: str = "alice") -> httpx.Response:
        """The whole browser flow with an HTTP client: /login, the provider's forms, /authorize.
        Returns the app's answer to the callback (302 to / with the session cookie on success)."""
        r = await client.get(self.server.url + "/login")
        assert r.status_code == 302, r.text
        callback = await provider_sign_in(client, r.headers["location"], login, self.callback)
        return await client.get(callback)


@pytest.fixture
def make_oidc_provider(tmp_path: Path) -> Iterator[Callable[..., OidcProvider]]:
    providers: list[OidcProvider] = []

    def make(redirect_uris: Sequence[str], post_logout_redirect_uris: Sequence[str] = ()) -> OidcProvider:
        provider = OidcProvider(redirect_uris, post_logout_redirect_uris, tmp_path / f"oidc-{len(providers)}.log")
        providers.append(provider)
        return provider.start()

    yield make
    for p in providers:
        p.stop()


@pytest.fixture
def make_oidc_stack(
    make_oidc_provider: Callable[..., OidcProvider], make_server: Callable[..., ThreadServer]
) -> Callable[..., OidcStack]:
    """The provider and a Stratochat server that signs in through it (extra Settings as keywords)."""

    def make(**overrides: Any) -> OidcStack:
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        provider = make_oidc_provider([origin + "/authorize"], [origin + "/"])
        overrides = {
            "port": port,
            "oidc_issuer_url": provider.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "secret_key": TEST_SECRET_KEY,
            **overrides,
        }
        return OidcStack(provider, make_server(**overrides))

    return make


@pytest.fixture
def oidc_stack(make_oidc_stack: Callable[..., OidcStack]) -> OidcStack:
    return make_oidc_stack()
