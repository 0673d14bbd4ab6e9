"""One server process configured only through SSM Parameter Store serves chats stored in DynamoDB and
signs users in through an OpenID Connect provider (moto over HTTP, oidc-provider, a real process)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import httpx
import pytest

from stratochat.adapters.aws_provision import provision_tables
from stratochat.adapters.store.dynamodb import TableNames
from tests.client import Api
from tests.services.oidc import CLIENT_ID, CLIENT_SECRET, TEST_SECRET_KEY, OidcProvider, provider_sign_in
from tests.services.server import ServerProcess, free_port


async def sign_in(url: str, login: str) -> str:
    """The browser's redirect flow with an HTTP client; returns the session token from the cookie."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=15.0) as c:
        r = await c.get(url + "/login")
        assert r.status_code == 302, r.text
        callback = await provider_sign_in(c, r.headers["location"], login, url + "/authorize")
        r = await c.get(callback)
        assert r.status_code == 302 and r.headers["location"] == "/", r.text
        return str(c.cookies["session_id"])


async def test_ssm_configured_process_on_dynamodb_with_oidc_login(
    moto_serial_endpoint: str,
    unique_prefix: str,
    make_oidc_provider: Callable[..., OidcProvider],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Everything but the bind address comes from SSM; sign-in, chat and history all work, on DynamoDB."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_serial_endpoint)
    await provision_tables(unique_prefix)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    provider = make_oidc_provider([origin + "/authorize"], [origin + "/"])
    path = f"/{unique_prefix.rstrip('-')}/stratochat"
    ssm = boto3.client("ssm", endpoint_url=moto_serial_endpoint, region_name="us-east-1")
    params = {
        "STRATOCHAT_STORE": ("String", "dynamodb"),
        "STRATOCHAT_TABLE_PREFIX": ("String", unique_prefix),
        "STRATOCHAT_DATA_DIR": ("String", str(tmp_path / "data")),
        "OIDC_ISSUER_URL": ("String", provider.issuer),
        "OIDC_CLIENT_ID": ("String", CLIENT_ID),
        "OIDC_CLIENT_SECRET": ("SecureString", CLIENT_SECRET),
        "SECRET_KEY": ("SecureString", TEST_SECRET_KEY),
    }
    for name, (kind, value) in params.items():
        ssm.put_parameter(Name=f"{path}/{name}", Value=value, Type=kind)
    node = ServerProcess(
        {"STRATOCHAT_SSM_PATH": path, "AWS_ENDPOINT_URL": moto_serial_endpoint},
        port=port,
        log_path=tmp_path / "node.log",
    ).start()
    try:
        alice_token = await sign_in(node.url, "alice")
        bob_token = await sign_in(node.url, "bob")
        async with Api(node.url, alice_token) as alice, Api(node.url, bob_token) as bob:
            assert (await alice.get("/api/me")).json()["user"]["username"] == "alice"
            b = await bob.socket(node.ws_url)
            a = await alice.socket(node.ws_url)
            cid = (await alice.chat_with("bob"))["chat_id"]
            ack = await a.send_text(cid, "stored in dynamodb", "k-1")
            assert (await b.expect("message"))["message"] == ack["message"]
            assert [m["content"] for m in (await bob.history(cid))["messages"]] == ["stored in dynamodb"]
        db = boto3.client("dynamodb", endpoint_url=moto_serial_endpoint, region_name="us-east-1")
        items = db.query(
            TableName=TableNames.for_prefix(unique_prefix).messages,
            KeyConditionExpression="chat_id = :c",
            ExpressionAttributeValues={":c": {"S": cid}},
        )["Items"]
        assert [i["content"]["S"] for i in items] == ["stored in dynamodb"]
        assert not (tmp_path / "data" / "stratochat.db").exists()  # nothing went to the embedded store
    finally:
        node.stop()
