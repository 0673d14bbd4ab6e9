"""Settings: SSM Parameter Store (moto in server mode), the SECRET_KEY guard, and the identity provider."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from pydantic import ValidationError
from pydantic_settings.exceptions import SettingsError

from stratochat.settings import Settings
from tests.services.server import ROOT, ServerProcess

GOOD_KEY = "k3y-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF"


def make(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **kw)  # type: ignore[call-arg]


@pytest.fixture
def ssm(moto_endpoint: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """A fresh parameter path in moto; the SDK finds moto through its own AWS_ENDPOINT_URL_SSM."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", moto_endpoint)
    client = boto3.client("ssm", region_name="us-east-1")
    yield f"/stratochat/{unique_prefix.rstrip('-')}", client


def put(client: Any, path: str, name: str, value: str, secure: bool = False) -> None:
    kind = "SecureString" if secure else "String"
    client.put_parameter(Name=f"{path}/{name}", Value=value, Type=kind, Overwrite=True)


def test_ssm_parameters_are_read(ssm: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefixed and original unprefixed variables come from <path>/<VARIABLE_NAME>; SecureStrings decrypted."""
    path, client = ssm
    put(client, path, "SECRET_KEY", GOOD_KEY, secure=True)
    put(client, path, "REDIS_CLUSTER_ENDPOINT", "redis://cache.internal:6379")
    put(client, path, "STRATOCHAT_SESSION_TTL", "42")
    put(client, path, "STRATOCHAT_FREE_DAILY_MESSAGES", "12")
    put(client, path, "nested/STRATOCHAT_PORT", "1")  # deeper levels are not variables of this path
    s = make(tmp_path, ssm_path=path)
    assert s.secret_key == GOOD_KEY
    assert s.redis_cluster_endpoint == "redis://cache.internal:6379"
    assert (s.session_ttl, s.free_daily_messages, s.port) == (42, 12, 8000)
    # The path can come from the environment as well.
    monkeypatch.setenv("STRATOCHAT_SSM_PATH", path)
    assert make(tmp_path).session_ttl == 42


def test_ssm_paginates(ssm: tuple[str, Any], tmp_path: Path) -> None:
    """More parameters than one page (10) are all read."""
    path, client = ssm
    for i in range(14):
        put(client, path, f"UNUSED_{i}", "x")
    put(client, path, "STRATOCHAT_MAX_MESSAGE_CHARS", "321")
    assert make(tmp_path, ssm_path=path).max_message_chars == 321


def test_environment_overrides_ssm(ssm: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable wins over the parameter of the same name, and init arguments over both."""
    path, client = ssm
    put(client, path, "STRATOCHAT_SESSION_TTL", "42")
    put(client, path, "STRATOCHAT_MAX_MESSAGE_CHARS", "100")
    monkeypatch.setenv("STRATOCHAT_SESSION_TTL", "7")
    s = make(tmp_path, ssm_path=path, max_message_chars=50)
    assert (s.session_ttl, s.max_message_chars) == (7, 50)


def test_missing_required_parameter_names_it(ssm: tuple[str, Any], tmp_path: Path) -> None:
    """A cloud backend configured in SSM without SECRET_KEY fails with a message naming SECRET_KEY; a bad
    value names its variable."""
    path, client = ssm
    put(client, path, "REDIS_CLUSTER_ENDPOINT", "redis://cache.internal:6379")
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make(tmp_path, ssm_path=path)
    put(client, path, "SECRET_KEY", GOOD_KEY, secure=True)
    put(client, path, "STRATOCHAT_SESSION_TTL", "soon")
    with pytest.raises(ValidationError, match="session_ttl"):
        make(tmp_path, ssm_path=path)


def test_unreachable_ssm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SSM endpoint that does not answer stops start-up with a message naming the path."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SettingsError, match="STRATOCHAT_SSM_PATH=/stratochat/none"):
        make(tmp_path, ssm_path="/stratochat/none")
    with pytest.raises(SettingsError, match="absolute"):
        make(tmp_path, ssm_path="stratochat/relative")


def test_server_starts_from_ssm(ssm: tuple[str, Any], tmp_path: Path) -> None:
    """`stratochat serve` with only STRATOCHAT_SSM_PATH set runs on the limits stored in SSM."""
    path, client = ssm
    put(client, path, "STRATOCHAT_FREE_DAILY_MESSAGES", "12")
    put(client, path, "STRATOCHAT_DATA_DIR", str(tmp_path / "data"))
    env = {"STRATOCHAT_SSM_PATH": path, "AWS_ENDPOINT_URL_SSM": client.meta.endpoint_url}
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url) as c:
            c.post("/api/auth/register", json={"username": "sam", "password": "pw-123456"})
            token = c.post("/api/auth/login", json={"username": "sam", "password": "pw-123456"}).json()["token"]
            me = c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["limits"]["daily_messages"] == 12
        assert (tmp_path / "data" / "stratochat.db").exists()
    finally:
        server.stop()


def test_server_refuses_to_start_without_required_parameter(ssm: tuple[str, Any], tmp_path: Path) -> None:
    """`stratochat serve` stops at start-up, naming SECRET_KEY, when SSM configures Redis but no key."""
    path, client = ssm
    put(client, path, "REDIS_CLUSTER_ENDPOINT", "redis://127.0.0.1:9")
    env = {
        **ServerProcess({}).env,
        "STRATOCHAT_SSM_PATH": path,
        "AWS_ENDPOINT_URL_SSM": client.meta.endpoint_url,
        "STRATOCHAT_DATA_DIR": str(tmp_path),
    }
    env.pop("SECRET_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "stratochat", "serve"], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    assert b"SECRET_KEY" in proc.stderr


@pytest.mark.parametrize(
    "backend",
    [
        {"redis_cluster_endpoint": "redis://cache:6379"},
        {"s3_bucket_name": "files"},
        {"store": "dynamodb"},
        {"oidc_issuer_url": "https://idp.example.test", "oidc_client_id": "c"},
        {"cognito_user_pool_id": "eu-west-1_abc", "cognito_app_client_id": "c", "cognito_domain": "a.example.test"},
    ],
)
def test_cloud_backends_need_a_real_secret_key(tmp_path: Path, backend: dict[str, str]) -> None:
    """Once a cloud backend is configured, a missing, short or placeholder SECRET_KEY is refused by name."""
    for bad in (None, "", "x" * 31, "changethis-changethis-changethis-changethis", "please-CHANGEME-" * 3):
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            make(tmp_path, secret_key=bad, **backend)
    assert make(tmp_path, secret_key=GOOD_KEY, **backend).secret_key == GOOD_KEY


def test_embedded_defaults_need_no_secret_key(tmp_path: Path) -> None:
    """With nothing cloud configured, no SECRET_KEY is needed (one is generated into the data dir)."""
    s = make(tmp_path)
    assert s.secret_key is None and s.identity_provider() is None


def test_cognito_fills_in_the_oidc_settings(tmp_path: Path) -> None:
    """COGNITO_* give the pool's issuer, the app client, the hosted UI logout and the name 'Cognito'."""
    s = make(
        tmp_path,
        secret_key=GOOD_KEY,
        aws_default_region=None,
        cognito_user_pool_id="eu-west-1_AbC123",
        cognito_app_client_id="client-1",
        cognito_app_client_secret="s3cret",
        cognito_domain="chat.auth.eu-west-1.amazoncognito.com",
    )
    idp = s.identity_provider()
    assert idp is not None
    assert idp.kind == "cognito" and idp.name == "Cognito"
    assert idp.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert idp.discovery_url == idp.issuer + "/.well-known/openid-configuration"
    assert (idp.client_id, idp.client_secret) == ("client-1", "s3cret")
    assert idp.cognito_logout_url == "https://chat.auth.eu-west-1.amazoncognito.com/logout"


def test_generic_oidc_settings(tmp_path: Path) -> None:
    """OIDC_* configure any issuer, named by STRATOCHAT_OIDC_NAME (default 'Single sign-on')."""
    s = make(tmp_path, secret_key=GOOD_KEY, oidc_issuer_url="https://idp.example.test/", oidc_client_id="c")
    idp = s.identity_provider()
    assert idp is not None and idp.kind == "oidc" and idp.name == "Single sign-on"
    assert idp.issuer == "https://idp.example.test" and idp.client_secret is None
    assert idp.scopes == ("openid", "email", "profile") and idp.cognito_logout_url is None


@pytest.mark.parametrize(
    ("partial", "missing"),
    [
        ({"cognito_user_pool_id": "eu-west-1_x", "cognito_app_client_id": "c"}, "COGNITO_DOMAIN"),
        ({"cognito_app_client_id": "c", "cognito_domain": "d"}, "COGNITO_USER_POOL_ID"),
        ({"cognito_user_pool_id": "eu-west-1_x", "cognito_domain": "d"}, "COGNITO_APP_CLIENT_ID"),
        ({"oidc_issuer_url": "https://idp.example.test"}, "OIDC_CLIENT_ID"),
        ({"oidc_client_id": "c"}, "OIDC_ISSUER_URL"),
        (
            {"cognito_user_pool_id": "nounderscore", "cognito_app_client_id": "c", "cognito_domain": "d"},
            "<region>_<id>",
        ),
    ],
)
def test_incomplete_identity_settings_name_what_is_missing(
    tmp_path: Path, partial: dict[str, str], missing: str
) -> None:
    """A partial COGNITO_* or OIDC_* set fails at start-up naming the missing variable."""
    with pytest.raises(ValidationError, match=missing):
        make(tmp_path, secret_key=GOOD_KEY, **partial)
