"""Chats: a ChatSessions item per chat (members, ``last_seq``, last-message preview) and a ChatMembers
item per member (``user_id``, ``chat_id``: the member's read marker).

A chat is created with its members in one transaction; a direct chat's transaction also claims its
``direct_key`` in UniqueKeys, so of two callers racing for one pair, one creates the chat and the other
gets it back. A group too large for one transaction writes its members first and the chat item last: the
chat exists only once that commit point is written, and members of a chat that does not exist are ignored.

The inbox is a Query of the user's member items plus a BatchGetItem of their chats, sorted by activity in
memory: it needs every chat's current ``last_seq`` and preview, which live on the chat item, and keeping an
activity-sorted index per member would cost a write per member per message.
"""

from __future__ import annotations

from typing import Any

from ....core.errors import Conflict, NotFound, Unavailable
from ....core.models import Chat, InboxEntry
from .client import ConditionFailed, DynamoClient, TransactionCanceled
from .items import chat_from, chat_item, direct_claim, get_n, get_s, member_ids_from, member_item, n, s
from .schema import TableNames
from .users import claim_put

TRANSACT_MAX = 100  # items in one TransactWriteItems


class DynamoChats:
    def __init__(self, client: DynamoClient, tables: TableNames) -> None:
        self._db = client
        self._t = tables

    async def create_chat(self, chat: Chat) -> tuple[Chat, bool]:
        members = [member_item(m, chat.chat_id, chat.created_at) for m in dict.fromkeys(chat.member_ids)]
        chat_put: dict[str, Any] = {
            "Put": {
                "TableName": self._t.chats,
                "Item": chat_item(chat),
                "ConditionExpression": "attribute_not_exists(#id)",
                "ExpressionAttributeNames": {"#id": "chat_id"},
            }
        }
        member_puts: list[dict[str, Any]] = [{"Put": {"TableName": self._t.members, "Item": m}} for m in members]
        claim = (
            [claim_put(self._t.unique, direct_claim(chat.direct_key), chat_id=chat.chat_id)] if chat.direct_key else []
        )
        items = [*claim, chat_put, *member_puts]
        if len(items) > TRANSACT_MAX and not claim:
            await self._db.batch_put(self._t.members, members)
            try:
                await self._db.call("put_item", **chat_put["Put"])
            except ConditionFailed:
                raise Conflict("a chat with that id exists") from None
            return chat, True
        try:
            await self._db.transact(items, token=f"chat|{chat.chat_id}")
        except TransactionCanceled as exc:
            if claim and exc.failed(0):
                assert chat.direct_key is not None
                existing = await self._direct_chat(chat.direct_key)
                if existing is None:
                    raise Unavailable("the direct chat is being created; try again") from None
                return existing, False
            if exc.failed(len(claim)):
                raise Conflict("a chat with that id exists") from None
            raise
        return chat, True

    async def _direct_chat(self, direct_key: str) -> Chat | None:
        found = await self._db.get(self._t.unique, {"claim": s(direct_claim(direct_key))})
        return await self.get_chat(get_s(found, "chat_id")) if found else None

    async def get_chat(self, chat_id: str) -> Chat | None:
        item = await self._db.get(self._t.chats, {"chat_id": s(chat_id)})
        return chat_from(item) if item else None

    async def _memberships(self, user_id: str) -> dict[str, int]:
        """``{chat_id: read_seq}`` for every chat the user is a member of."""
        rows = await self._db.query(
            TableName=self._t.members,
            KeyConditionExpression="#u = :u",
            ProjectionExpression="#c, #r",
            ExpressionAttributeNames={"#u": "user_id", "#c": "chat_id", "#r": "read_seq"},
            ExpressionAttributeValues={":u": s(user_id)},
        )
        return {get_s(r, "chat_id"): get_n(r, "read_seq") for r in rows}

    async def list_chats_for_user(self, user_id: str) -> list[InboxEntry]:
        read = await self._memberships(user_id)
        if not read:
            return []
        items = await self._db.batch_get(self._t.chats, [{"chat_id": s(c)} for c in read])
        entries = [InboxEntry(chat, read[chat.chat_id]) for chat in map(chat_from, items)]
        entries.sort(key=lambda e: (-e.chat.activity_at, e.chat.chat_id))
        return entries

    async def set_read_seq(self, chat_id: str, user_id: str, seq: int) -> int:
        chat = await self._db.get(self._t.chats, {"chat_id": s(chat_id)}, projection="#s", names={"#s": "last_seq"})
        if chat is None:
            raise NotFound("no such chat")
        # last_seq only grows, so a marker clamped to the value just read never passes the real one.
        target = min(seq, get_n(chat, "last_seq"))
        key = {"user_id": s(user_id), "chat_id": s(chat_id)}
        try:
            result = await self._db.call(
                "update_item",
                TableName=self._t.members,
                Key=key,
                UpdateExpression="SET #r = :t",
                ConditionExpression="attribute_exists(#u) AND #r < :t",
                ExpressionAttributeNames={"#r": "read_seq", "#u": "user_id"},
                ExpressionAttributeValues={":t": n(target)},
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return get_n(result["Attributes"], "read_seq")
        except ConditionFailed as exc:
            item = exc.item or await self._db.get(self._t.members, key)
            if item is None:
                raise NotFound("no such chat") from None
            return get_n(item, "read_seq")

    async def contacts_of(self, user_id: str) -> set[str]:
        chat_ids = list(await self._memberships(user_id))
        if not chat_ids:
            return set()
        items = await self._db.batch_get(
            self._t.chats, [{"chat_id": s(c)} for c in chat_ids], projection="#m", names={"#m": "member_ids"}
        )
        return {m for it in items for m in member_ids_from(it)} - {user_id}
