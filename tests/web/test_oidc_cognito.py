"""Cognito as an OpenID Connect issuer: discovery and ID tokens from moto's Cognito (no hosted UI there)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from stratochat.adapters.identity.oidc import OidcIdentityProvider
from stratochat.core.errors import Unauthorized
from stratochat.settings import Settings
from tests.services.oidc import TEST_SECRET_KEY


@pytest.fixture
def cognito(moto_endpoint: str, unique_prefix: str) -> dict[str, Any]:
    """A user pool, an app client with a secret and a signed-in user's tokens, in moto."""
    idp = boto3.client("cognito-idp", endpoint_url=moto_endpoint, region_name="us-east-1")
    pool = idp.create_user_pool(PoolName=unique_prefix + "pool")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="web",
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        ReadAttributes=["email", "email_verified"],
    )["UserPoolClient"]
    cid, secret = client["ClientId"], client["ClientSecret"]
    idp.admin_create_user(
        UserPoolId=pool,
        Username="alice",
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": "alice@example.test"}],
    )
    idp.admin_set_user_password(UserPoolId=pool, Username="alice", Password="Passw0rd!Passw0rd", Permanent=True)
    digest = hmac.new(secret.encode(), b"alice" + cid.encode(), hashlib.sha256).digest()
    tokens = idp.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=cid,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={
            "USERNAME": "alice",
            "PASSWORD": "Passw0rd!Passw0rd",
            "SECRET_HASH": base64.b64encode(digest).decode(),
        },
    )["AuthenticationResult"]
    return {"pool": pool, "client_id": cid, "secret": secret, "tokens": tokens}


@pytest.fixture
async def provider(
    cognito: dict[str, Any], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OidcIdentityProvider]:
    # Discovery and JWKS are found through the SDK's own endpoint variable, as the AWS SDK would.
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDP", moto_endpoint)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        secret_key=TEST_SECRET_KEY,
        cognito_user_pool_id=cognito["pool"],
        cognito_app_client_id=cognito["client_id"],
        cognito_app_client_secret=cognito["secret"],
        cognito_domain="auth.example.test",
    )
    config = settings.identity_provider()
    assert config is not None
    p = OidcIdentityProvider(config)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_cognito_discovery_and_hosted_ui_endpoints(
    provider: OidcIdentityProvider, cognito: dict[str, Any]
) -> None:
    """The issuer is the pool's AWS URL; authorize/logout live on COGNITO_DOMAIN (moto's discovery has none)."""
    meta, _ = await provider.metadata()
    assert meta.issuer == f"https://cognito-idp.us-east-1.amazonaws.com/{cognito['pool']}"
    assert provider.name == "Cognito"
    start = await provider.begin_login("https://chat.example.test/authorize")
    assert start.url.startswith("https://auth.example.test/oauth2/authorize?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(start.url).query).items()}
    assert q["client_id"] == cognito["client_id"] and q["code_challenge_method"] == "S256"
    assert q["state"] == start.state and q["nonce"] == start.nonce
    logout = await provider.end_session_url("id-token", "https://chat.example.test/")
    assert logout == (
        f"https://auth.example.test/logout?client_id={cognito['client_id']}"
        "&logout_uri=https%3A%2F%2Fchat.example.test%2F"
    )


async def test_cognito_id_token_checks(provider: OidcIdentityProvider, cognito: dict[str, Any]) -> None:
    """A pool's ID token passes signature, iss, aud and token_use and is held to the sign-in's nonce; its
    access token (token_use=access, no aud) is refused."""
    _, validator = await provider.metadata()
    with pytest.raises(Unauthorized, match="nonce"):
        # moto's tokens come from the password flow and carry no nonce: every other check passed first.
        await validator.validate(cognito["tokens"]["IdToken"], nonce="expected-nonce")
    with pytest.raises(Unauthorized, match="aud"):
        await validator.validate(cognito["tokens"]["AccessToken"], nonce="expected-nonce")
