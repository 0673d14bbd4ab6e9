"""A real server on STRATOCHAT_STORE=dynamodb (moto over HTTP): two users chat over WebSockets, and the
history, sessions and inbox live in DynamoDB (a second node with an empty data directory serves them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from stratochat.adapters.aws_provision import provision_tables
from stratochat.adapters.store.dynamodb import TableNames
from tests.client import Api
from tests.services.server import ThreadServer

SECRET = "e2e-dynamo-secret-key-0123456789abcdefghijklmnop"


async def test_chat_over_sockets_with_history_in_dynamodb(
    make_server: Callable[..., ThreadServer],
    moto_serial_endpoint: str,
    unique_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Messages sent over the socket are stored in DynamoDB and served from it by any node."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_serial_endpoint)
    await provision_tables(unique_prefix)
    # port=0: a free port (the default, 8000, may be taken by another suite running on this machine).
    options = {"store": "dynamodb", "table_prefix": unique_prefix, "secret_key": SECRET, "port": 0}
    first = make_server(data_dir=tmp_path / "node1", **options)
    async with Api(first.url) as alice, Api(first.url) as bob:
        await alice.signup()
        await bob.signup()
        a = await alice.socket(first.ws_url)
        b = await bob.socket(first.ws_url)
        chat = await alice.chat_with(bob.username)
        assert (await b.expect("chat"))["chat"]["chat_id"] == chat["chat_id"]
        cid = chat["chat_id"]
        ack = await a.send_text(cid, "hello from dynamo", "c-1")
        assert ack["message"]["seq"] == 1
        assert (await b.expect("message"))["message"] == ack["message"]
        reply = await b.send_text(cid, "hi alice")
        assert (await a.expect("message"))["message"]["seq"] == reply["message"]["seq"] == 2
        retry = await a.send_text(cid, "hello from dynamo", "c-1")
        assert retry["message"] == ack["message"]
        await a.close()
        await b.close()

        # The items are in DynamoDB itself.
        db = boto3.client("dynamodb", endpoint_url=moto_serial_endpoint, region_name="us-east-1")
        tables = TableNames.for_prefix(unique_prefix)
        items = db.query(
            TableName=tables.messages,
            KeyConditionExpression="chat_id = :c",
            ExpressionAttributeValues={":c": {"S": cid}},
        )["Items"]
        assert [(i["seq"]["N"], i["content"]["S"]) for i in items] == [("1", "hello from dynamo"), ("2", "hi alice")]

        # A second node with an empty data directory knows the sessions, the inbox and the history.
        first.stop()
        second = make_server(data_dir=tmp_path / "node2", **options)
        for client in (alice, bob):
            client.http.base_url = second.url  # type: ignore[assignment]
        history = await bob.history(cid)
        assert [m["content"] for m in history["messages"]] == ["hello from dynamo", "hi alice"]
        assert history["has_more"] is False
        assert [m["seq"] for m in await alice.all_messages(cid, after=1)] == [2]
        (inbox,) = (await alice.get("/api/chats")).json()["chats"]
        assert inbox["last_seq"] == 2 and inbox["last_message_content"] == "hi alice"
        assert inbox["unread_count"] == 1
        s = await bob.socket(second.ws_url)
        ack = await s.send_text(cid, "after the restart")
        assert ack["message"]["seq"] == 3
        await s.close()
        ready = await alice.get("/readyz")
        assert ready.status_code == 200 and ready.json()["backends"]["store"] == "ok"
