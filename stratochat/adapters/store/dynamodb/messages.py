"""Messages: ChatMessages items keyed (``chat_id``, ``seq``), appended with one TransactWriteItems.

Why one transaction: a recovering client asks for ``after=<last seq it saw>``, so seq N+1 must never be
visible before seq N. Allocating the seq with an atomic counter and writing the message afterwards would
open exactly that window (and lose a seq when the writer dies in between). Instead the message becomes
visible atomically with its seq, in one transaction of four to seven items:

- chat: Update the chat item: ``last_seq = :n``, the preview and its time, on condition
  ``last_seq = :n - 1`` (optimistic concurrency on the chat's own counter; on failure the current item
  comes back, so a retry needs no read);
- message: Put the message (``attribute_not_exists``: a seq is never written twice);
- member: Update the sender's member item: read marker to ``:n`` (must exist: a non-member gets ``NotFound``);
- usage: Update the sender's UsageCounters item of the draft's UTC day: ``ADD message_count 1``, on condition
  ``message_count < :limit`` when there is a daily limit (so the quota holds under any concurrency);
- claim: Put the ``client_msg_id`` claim (``attribute_not_exists``), when the draft has one;
- file, storage: for a file message, flip its grant from pending to sent (on condition it is this sender's,
  for this chat, unexpired and the declared file) and add its size to the sender's ``storage_bytes`` (on
  condition it stays within the storage quota).

A cancelled transaction says which conditions failed: the claim (a retry: return the stored original with
``False``, never refused for a limit), the chat (another writer took the seq: retry with the ``last_seq``
that came back, bounded, with backoff), the member item (``NotFound``), the counter or the stored bytes
(``QuotaExceeded``), the grant (``BadRequest``). Nothing is written in any of these cases.

Within one process appends to one chat wait for each other (a FIFO lock per chat) and remember the last
seq they wrote, so one node's concurrent senders to a chat do not fight over its counter, and a chat only
this node writes to costs no read at all. Once another node's write made one of ours conflict, the chat
counts as shared and each append reads ``last_seq`` first (1 read unit, cheaper than a cancelled
transaction); only truly simultaneous writers on two nodes still conflict and retry. The price: one chat's
appends on one node go one transaction at a time (about 100 per second at 10 ms per transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from ....core.errors import BadRequest, NotFound, QuotaExceeded, Unavailable
from ....core.models import Message, MessageDraft, utc_day
from .client import DynamoClient, Item, TransactionCanceled, backoff
from .items import (
    client_msg_claim,
    get_n,
    get_s,
    message_from,
    message_item,
    n,
    preview,
    s,
    ttl_seconds,
)
from .schema import PENDING_ATTR, TTL_ATTRIBUTE, TableNames

DAY_MS = 86_400_000
# Daily counters are kept this long after their day ends (get_usage of recent days), then TTL removes them.
USAGE_KEEP_MS = 35 * DAY_MS
# Optimistic attempts of one append against writers on other nodes before giving up with Unavailable.
MAX_ATTEMPTS = 32
SEQ_CACHE_SIZE = 10_000


class _ChatLocks:
    """One FIFO asyncio.Lock per chat id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, chat_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(chat_id)
        if entry is None:
            entry = self._locks[chat_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[chat_id]


def file_problem(record: Item | None, draft: MessageDraft) -> str:
    """Why the file's grant refused the message (worded as the SQLite store words it)."""
    if record is None or get_s(record, "uploader_id") != draft.sender_id:
        return "no such file; request an upload first"
    if get_s(record, "chat_id") != draft.chat_id:
        return "this file was granted for another chat"
    if get_s(record, "status") != "pending":
        return "this file was already sent"
    if get_n(record, "expires_at") <= draft.created_at:
        return "this upload expired; upload the file again"
    return "the file does not match its upload grant"


def _bounded_put(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    """Insert or refresh ``key`` in an LRU of at most SEQ_CACHE_SIZE entries."""
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > SEQ_CACHE_SIZE:
        cache.popitem(last=False)


def quota_error(limit: int) -> QuotaExceeded:
    return QuotaExceeded(f"daily limit of {limit} messages reached; it resets at 00:00 UTC")


class DynamoMessages:
    def __init__(self, client: DynamoClient, tables: TableNames) -> None:
        self._db = client
        self._t = tables
        self._locks = _ChatLocks()
        # chat_id -> the last seq this process wrote or saw: the expected value of the next append.
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        # Chats another process appended to (one of our transactions conflicted): a fresh read (1 RCU)
        # before each append costs less than a cancelled transaction, which is charged like a write.
        self._shared: OrderedDict[str, None] = OrderedDict()

    def _remember(self, chat_id: str, seq: int) -> None:
        _bounded_put(self._last_seq, chat_id, seq)

    async def _read_last_seq(self, chat_id: str) -> int:
        item = await self._db.get(self._t.chats, {"chat_id": s(chat_id)}, projection="#s", names={"#s": "last_seq"})
        if item is None:
            raise NotFound("no such chat")
        return get_n(item, "last_seq")

    async def append_message(
        self, draft: MessageDraft, *, daily_limit: int | None = None, storage_limit: int | None = None
    ) -> tuple[Message, bool]:
        async with self._locks.hold(draft.chat_id):
            return await self._append(draft, daily_limit, storage_limit)

    async def _stored_retry(self, draft: MessageDraft) -> Message | None:
        if draft.client_msg_id is None:
            return None
        return await self.get_by_client_msg_id(draft.chat_id, draft.sender_id, draft.client_msg_id)

    async def _append(
        self, draft: MessageDraft, daily_limit: int | None, storage_limit: int | None
    ) -> tuple[Message, bool]:
        if daily_limit is not None and daily_limit <= 0:
            stored = await self._stored_retry(draft)
            if stored is not None:
                return stored, False
            raise quota_error(daily_limit)
        chat_id = draft.chat_id
        expected = None if chat_id in self._shared else self._last_seq.get(chat_id)
        if expected is None:
            expected = await self._read_last_seq(chat_id)
        for attempt in range(MAX_ATTEMPTS):
            seq = expected + 1
            items, at = self._items(draft, seq, daily_limit, storage_limit)
            try:
                await self._db.transact(items, token=f"msg|{draft.message_id}|{seq}")
            except TransactionCanceled as exc:
                if "claim" in at and exc.failed(at["claim"]):
                    stored = await self._stored_retry(draft)
                    if stored is not None:
                        return stored, False
                if exc.failed(at["chat"]) or exc.failed(at["message"]):
                    current = exc.item(at["chat"])
                    expected = get_n(current, "last_seq") if current else await self._read_last_seq(chat_id)
                    self._remember(chat_id, expected)
                    _bounded_put(self._shared, chat_id, None)
                    if attempt >= 2:
                        await backoff(attempt - 2)
                    continue
                if exc.failed(at["member"]):
                    raise NotFound("no such chat") from None
                if exc.failed(at["usage"]) or ("storage" in at and exc.failed(at["storage"])):
                    stored = await self._stored_retry(draft)
                    if stored is not None:
                        return stored, False
                if exc.failed(at["usage"]):
                    assert daily_limit is not None
                    raise quota_error(daily_limit) from None
                if "file" in at and exc.failed(at["file"]):
                    raise BadRequest(file_problem(exc.item(at["file"]), draft)) from None
                if "storage" in at and exc.failed(at["storage"]):
                    assert draft.file is not None
                    raise QuotaExceeded(
                        f"storage quota of {storage_limit} bytes reached; this file needs {draft.file.size}"
                    ) from None
                raise Unavailable("the database did not store the message; try again") from None
            self._remember(chat_id, seq)
            return Message.from_draft(draft, seq), True
        raise Unavailable("the chat is too busy; try again")

    def _items(
        self, draft: MessageDraft, seq: int, daily_limit: int | None, storage_limit: int | None
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The transaction's items and where each kind sits in it."""
        day_end = draft.created_at - draft.created_at % DAY_MS + DAY_MS
        usage: dict[str, Any] = {
            "TableName": self._t.usage,
            "Key": {"user_id": s(draft.sender_id), "day": s(utc_day(draft.created_at))},
            "UpdateExpression": "ADD #c :one SET #ttl = :ttl",
            "ExpressionAttributeNames": {"#c": "message_count", "#ttl": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":one": n(1), ":ttl": n(ttl_seconds(day_end + USAGE_KEEP_MS))},
        }
        if daily_limit is not None:
            usage["ConditionExpression"] = "attribute_not_exists(#c) OR #c < :limit"
            usage["ExpressionAttributeValues"][":limit"] = n(daily_limit)
        items: dict[str, dict[str, Any]] = {
            "chat": {
                "Update": {
                    "TableName": self._t.chats,
                    "Key": {"chat_id": s(draft.chat_id)},
                    "UpdateExpression": "SET #s = :seq, #p = :p, #at = :at",
                    "ConditionExpression": "attribute_exists(#id) AND #s = :expected",
                    "ExpressionAttributeNames": {
                        "#s": "last_seq",
                        "#p": "last_message_content",
                        "#at": "last_message_at",
                        "#id": "chat_id",
                    },
                    "ExpressionAttributeValues": {
                        ":seq": n(seq),
                        ":expected": n(seq - 1),
                        ":p": s(preview(draft.preview)),
                        ":at": n(draft.created_at),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            "message": {
                "Put": {
                    "TableName": self._t.messages,
                    "Item": message_item(draft, seq),
                    "ConditionExpression": "attribute_not_exists(#id)",
                    "ExpressionAttributeNames": {"#id": "chat_id"},
                }
            },
            "member": {
                "Update": {
                    "TableName": self._t.members,
                    "Key": {"user_id": s(draft.sender_id), "chat_id": s(draft.chat_id)},
                    "UpdateExpression": "SET #r = :seq",
                    "ConditionExpression": "attribute_exists(#u)",
                    "ExpressionAttributeNames": {"#r": "read_seq", "#u": "user_id"},
                    "ExpressionAttributeValues": {":seq": n(seq)},
                }
            },
            "usage": {"Update": usage},
        }
        if draft.client_msg_id is not None:
            claim = client_msg_claim(draft.chat_id, draft.sender_id, draft.client_msg_id)
            items["claim"] = {
                "Put": {
                    "TableName": self._t.unique,
                    "Item": {"claim": s(claim), "chat_id": s(draft.chat_id), "seq": n(seq)},
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": "claim"},
                }
            }
        if draft.file is not None:
            items["file"] = self._take_file(draft)
            items["storage"] = self._charge(draft, storage_limit)
        return list(items.values()), {kind: i for i, kind in enumerate(items)}

    def _take_file(self, draft: MessageDraft) -> dict[str, Any]:
        """The grant flips from pending to sent, only if it is this sender's, for this chat, unexpired
        and exactly the declared file (so two sends of one file store one message)."""
        f = draft.file
        assert f is not None
        return {
            "Update": {
                "TableName": self._t.files,
                "Key": {"file_id": s(f.file_id)},
                "UpdateExpression": "SET #st = :sent, #mid = :mid REMOVE #pending",
                "ConditionExpression": (
                    "#st = :pending AND #up = :sender AND #chat = :chat AND #exp > :now"
                    " AND #fn = :fn AND #ct = :ct AND #size = :size"
                ),
                "ExpressionAttributeNames": {
                    "#st": "status",
                    "#mid": "message_id",
                    "#pending": PENDING_ATTR,
                    "#up": "uploader_id",
                    "#chat": "chat_id",
                    "#exp": "expires_at",
                    "#fn": "filename",
                    "#ct": "content_type",
                    "#size": "size",
                },
                "ExpressionAttributeValues": {
                    ":sent": s("sent"),
                    ":pending": s("pending"),
                    ":mid": s(draft.message_id),
                    ":sender": s(draft.sender_id),
                    ":chat": s(draft.chat_id),
                    ":now": n(draft.created_at),
                    ":fn": s(f.filename),
                    ":ct": s(f.content_type),
                    ":size": n(f.size),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _charge(self, draft: MessageDraft, storage_limit: int | None) -> dict[str, Any]:
        """The sender's stored bytes grow by the file's size, within the quota (a condition cannot add,
        so it compares the bytes before with the room the file leaves)."""
        assert draft.file is not None
        update: dict[str, Any] = {
            "TableName": self._t.users,
            "Key": {"user_id": s(draft.sender_id)},
            "UpdateExpression": "ADD #b :size",
            "ConditionExpression": "attribute_exists(#id)",
            "ExpressionAttributeNames": {"#b": "storage_bytes", "#id": "user_id"},
            "ExpressionAttributeValues": {":size": n(draft.file.size)},
        }
        if storage_limit is not None:
            update["ConditionExpression"] += " AND #b <= :room"
            update["ExpressionAttributeValues"][":room"] = n(storage_limit - draft.file.size)
        return {"Update": update}

    async def get_by_client_msg_id(self, chat_id: str, sender_id: str, client_msg_id: str) -> Message | None:
        found = await self._db.get(self._t.unique, {"claim": s(client_msg_claim(chat_id, sender_id, client_msg_id))})
        if found is None:
            return None
        item = await self._db.get(self._t.messages, {"chat_id": s(chat_id), "seq": n(get_n(found, "seq"))})
        return message_from(item) if item else None

    async def list_messages(
        self, chat_id: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> tuple[list[Message], bool]:
        if before is not None and after is not None:
            raise ValueError("before and after are exclusive")
        names = {"#c": "chat_id", "#s": "seq"}
        if after is not None:
            items = await self._db.query(
                limit=limit + 1,
                TableName=self._t.messages,
                KeyConditionExpression="#c = :c AND #s > :a",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":c": s(chat_id), ":a": n(after)},
                ScanIndexForward=True,
            )
            return [message_from(i) for i in items[:limit]], len(items) > limit
        if before is not None:
            condition, values = "#c = :c AND #s < :b", {":c": s(chat_id), ":b": n(before)}
        else:
            condition, values = "#c = :c", {":c": s(chat_id)}
            names = {"#c": "chat_id"}
        items = await self._db.query(
            limit=limit + 1,
            TableName=self._t.messages,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
        )
        page = [message_from(i) for i in items[:limit]]
        page.reverse()
        return page, len(items) > limit
