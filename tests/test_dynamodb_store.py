"""What the DynamoDB store does beyond the shared contract: SDK endpoint variables, DynamoDB's limits, large
groups, the capped preview, expired sessions and readiness (moto over real HTTP)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from stratochat.adapters.aws_provision import provision_tables
from stratochat.adapters.store.dynamodb import DynamoStore
from stratochat.adapters.store.dynamodb.items import PREVIEW_CHARS
from stratochat.core.clock import FakeClock
from stratochat.core.errors import TooLarge, Unavailable
from stratochat.core.models import Chat, Session
from tests.contracts.store import draft, new_chat, new_user
from tests.services.server import free_port


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(
    moto_serial_endpoint: str, unique_prefix: str, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> AsyncIterator[DynamoStore]:
    # The per-service variable wins over the general one, as the SDK defines: the general one points nowhere.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_serial_endpoint)
    await provision_tables(unique_prefix)
    store = DynamoStore(unique_prefix, clock)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def test_sdk_endpoint_variables_are_honoured(store: DynamoStore) -> None:
    """AWS_ENDPOINT_URL_DYNAMODB reaches the store with no setting of Stratochat's own."""
    await store.ping()


async def test_unreachable_dynamodb_is_unavailable(
    moto_serial_endpoint: str, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """With nothing listening, ping (readiness) and reads raise Unavailable, not an SDK error."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's own knob: no retries, so the test is quick
    store = DynamoStore("nowhere-", clock)
    await store.start()
    try:
        with pytest.raises(Unavailable):
            await store.ping()
        with pytest.raises(Unavailable):
            await store.get_user("u1")
    finally:
        await store.close()
    with pytest.raises(Unavailable):
        await store.ping()


async def test_preview_is_capped_and_message_kept_whole(store: DynamoStore, clock: FakeClock) -> None:
    """The chat item keeps the first PREVIEW_CHARS characters; the message keeps all of its content."""
    a, b = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, a, b)
    content = "x" * (PREVIEW_CHARS + 50)
    await store.append_message(draft(chat, a, content))
    got = await store.get_chat(chat.chat_id)
    assert got is not None and got.last_message_content == content[:PREVIEW_CHARS]
    page, _ = await store.list_messages(chat.chat_id)
    assert page[0].content == content


async def test_message_over_the_item_limit_is_too_large(store: DynamoStore, clock: FakeClock) -> None:
    """A message larger than a DynamoDB item (400 KB) is refused with TooLarge and nothing is stored."""
    a, b = await new_user(store, clock), await new_user(store, clock)
    chat = await new_chat(store, clock, a, b)
    with pytest.raises(TooLarge):
        await store.append_message(draft(chat, a, "é" * 210_000))
    assert (await store.get_chat(chat.chat_id)).last_seq == 0  # type: ignore[union-attr]
    message, _ = await store.append_message(draft(chat, a, "small"))
    assert message.seq == 1


async def test_group_larger_than_a_transaction(store: DynamoStore, clock: FakeClock) -> None:
    """A 120-member group (past the 100-item transaction limit) is created whole and works."""
    members = [await new_user(store, clock) for _ in range(120)]
    ids = tuple(sorted(m.user_id for m in members))
    chat = Chat(uuid.uuid4().hex, True, "everyone", ids, clock.now_ms(), members[0].user_id)
    stored, created = await store.create_chat(chat)
    assert created and stored == chat
    for member in (members[0], members[-1]):
        (entry,) = await store.list_chats_for_user(member.user_id)
        assert entry.chat.chat_id == chat.chat_id
    assert await store.contacts_of(members[5].user_id) == set(ids) - {members[5].user_id}
    message, _ = await store.append_message(draft(chat, members[7], "hello all"))
    assert message.seq == 1


async def test_expired_session_reads_as_missing(store: DynamoStore, clock: FakeClock) -> None:
    """DynamoDB's TTL deletes late, so the store itself drops sessions past expires_at; they carry ttl."""
    user = await new_user(store, clock)
    now = clock.now_ms()
    session = Session(uuid.uuid4().hex, user.user_id, now, now + 2_500)
    await store.create_session(session)
    assert await store.get_session(session.session_id) == session
    clock.advance(3)
    assert await store.get_session(session.session_id) is None
    import boto3

    raw = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=store.tables.sessions, Key={"session_id": {"S": session.session_id}}
    )["Item"]
    assert raw["ttl"] == {"N": str(-(-(now + 2_500) // 1000))}
