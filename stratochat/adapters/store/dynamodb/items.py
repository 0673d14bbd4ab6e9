"""Domain objects to and from DynamoDB items (the low-level attribute-value form; numbers stay ints)."""

from __future__ import annotations

from typing import Any

import orjson

from ....core.models import PREVIEW_CHARS, Chat, FileRecord, FileRef, Message, MessageDraft, Session, User
from .client import Item
from .schema import DIRECTORY_ATTR, DIRECTORY_VALUE, PENDING_ATTR, PENDING_VALUE, TTL_ATTRIBUTE

# The chat item keeps a preview of the last message, not all of it: the chat item is rewritten by every
# message, and a write costs one unit per started KB of the item (twice that inside a transaction).
# The core's MessageDraft.preview already cuts it to this length; the cut here only guards the item size.


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def get_s(item: Item, name: str) -> str:
    return str(item[name]["S"])


def opt_s(item: Item, name: str) -> str | None:
    value = item.get(name)
    return None if value is None or "S" not in value else str(value["S"])


def get_n(item: Item, name: str, default: int = 0) -> int:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else default


def opt_n(item: Item, name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else None


def _compact(item: dict[str, Any]) -> Item:
    """Leave out optional attributes that are unset (DynamoDB has no use for explicit nulls)."""
    return {k: v for k, v in item.items() if v is not None}


def ttl_seconds(ms: int) -> int:
    """An epoch-milliseconds instant as the epoch seconds DynamoDB TTL wants, rounded up."""
    return -(-ms // 1000)


# claims in UniqueKeys --------------------------------------------------------------------------------
def username_claim(username: str) -> str:
    return f"username#{username}"


def external_claim(external_id: str) -> str:
    return f"external#{external_id}"


def direct_claim(direct_key: str) -> str:
    return f"direct#{direct_key}"


def client_msg_claim(chat_id: str, sender_id: str, client_msg_id: str) -> str:
    # client_msg_id goes last: it may contain '#', the ids before it are hex.
    return f"cmid#{chat_id}#{sender_id}#{client_msg_id}"


# users ------------------------------------------------------------------------------------------------
def user_item(user: User) -> Item:
    return _compact(
        {
            "user_id": s(user.user_id),
            "username": s(user.username),
            DIRECTORY_ATTR: s(DIRECTORY_VALUE),
            "is_premium": {"BOOL": user.is_premium},
            "created_at": n(user.created_at),
            "password_hash": s(user.password_hash) if user.password_hash is not None else None,
            "external_id": s(user.external_id) if user.external_id is not None else None,
            "storage_bytes": n(0),
        }
    )


def user_from(item: Item) -> User:
    return User(
        user_id=get_s(item, "user_id"),
        username=get_s(item, "username"),
        is_premium=bool(item.get("is_premium", {}).get("BOOL", False)),
        created_at=get_n(item, "created_at"),
        password_hash=opt_s(item, "password_hash"),
        external_id=opt_s(item, "external_id"),
    )


# sessions ---------------------------------------------------------------------------------------------
def session_item(session: Session) -> Item:
    return _compact(
        {
            "session_id": s(session.session_id),
            "user_id": s(session.user_id),
            "created_at": n(session.created_at),
            "expires_at": n(session.expires_at),
            TTL_ATTRIBUTE: n(ttl_seconds(session.expires_at)),
            "data": s(orjson.dumps(session.data).decode()) if session.data else None,
        }
    )


def session_from(item: Item) -> Session:
    data = opt_s(item, "data")
    return Session(
        session_id=get_s(item, "session_id"),
        user_id=get_s(item, "user_id"),
        created_at=get_n(item, "created_at"),
        expires_at=get_n(item, "expires_at"),
        data=orjson.loads(data) if data else None,
    )


# chats ------------------------------------------------------------------------------------------------
def chat_item(chat: Chat) -> Item:
    return _compact(
        {
            "chat_id": s(chat.chat_id),
            "is_group": {"BOOL": chat.is_group},
            "title": s(chat.title) if chat.title is not None else None,
            "member_ids": {"L": [s(m) for m in chat.member_ids]},
            "direct_key": s(chat.direct_key) if chat.direct_key is not None else None,
            "created_at": n(chat.created_at),
            "created_by": s(chat.created_by),
            "last_seq": n(chat.last_seq),
        }
    )


def chat_from(item: Item) -> Chat:
    return Chat(
        chat_id=get_s(item, "chat_id"),
        is_group=bool(item.get("is_group", {}).get("BOOL", False)),
        title=opt_s(item, "title"),
        member_ids=tuple(str(m["S"]) for m in item.get("member_ids", {}).get("L", [])),
        created_at=get_n(item, "created_at"),
        created_by=get_s(item, "created_by"),
        last_seq=get_n(item, "last_seq"),
        last_message_content=opt_s(item, "last_message_content"),
        last_message_at=opt_n(item, "last_message_at"),
        direct_key=opt_s(item, "direct_key"),
    )


def member_ids_from(item: Item) -> list[str]:
    return [str(m["S"]) for m in item.get("member_ids", {}).get("L", [])]


def member_item(user_id: str, chat_id: str, joined_at: int) -> Item:
    return {"user_id": s(user_id), "chat_id": s(chat_id), "read_seq": n(0), "joined_at": n(joined_at)}


def preview(content: str) -> str:
    """The first ``PREVIEW_CHARS`` characters (clients add an ellipsis if they want one)."""
    return content[:PREVIEW_CHARS]


# messages ---------------------------------------------------------------------------------------------
def message_item(draft: MessageDraft, seq: int) -> Item:
    file = draft.file
    return _compact(
        {
            "chat_id": s(draft.chat_id),
            "seq": n(seq),
            "message_id": s(draft.message_id),
            "sender_id": s(draft.sender_id),
            "sender": s(draft.sender),
            "message_type": s(draft.message_type),
            "content": s(draft.content),
            "created_at": n(draft.created_at),
            "client_msg_id": s(draft.client_msg_id) if draft.client_msg_id is not None else None,
            "file": (
                {
                    "M": {
                        "file_id": s(file.file_id),
                        "filename": s(file.filename),
                        "content_type": s(file.content_type),
                        "size": n(file.size),
                    }
                }
                if file is not None
                else None
            ),
        }
    )


def message_from(item: Item) -> Message:
    raw = item.get("file", {}).get("M")
    file = (
        FileRef(
            file_id=get_s(raw, "file_id"),
            filename=get_s(raw, "filename"),
            content_type=get_s(raw, "content_type"),
            size=get_n(raw, "size"),
        )
        if raw
        else None
    )
    message_type = get_s(item, "message_type")
    return Message(
        message_id=get_s(item, "message_id"),
        chat_id=get_s(item, "chat_id"),
        seq=get_n(item, "seq"),
        sender_id=get_s(item, "sender_id"),
        sender=get_s(item, "sender"),
        message_type="file" if message_type == "file" else "text",
        content=get_s(item, "content"),
        created_at=get_n(item, "created_at"),
        client_msg_id=opt_s(item, "client_msg_id"),
        file=file,
    )


# files ------------------------------------------------------------------------------------------------
def file_item(record: FileRecord) -> Item:
    return _compact(
        {
            "file_id": s(record.file_id),
            "chat_id": s(record.chat_id),
            "uploader_id": s(record.uploader_id),
            "filename": s(record.filename),
            "content_type": s(record.content_type),
            "size": n(record.size),
            "blob_key": s(record.key),
            "created_at": n(record.created_at),
            "expires_at": n(record.expires_at),
            "status": s(record.status),
            "message_id": s(record.message_id) if record.message_id is not None else None,
            PENDING_ATTR: s(PENDING_VALUE) if record.status == "pending" else None,
        }
    )


def file_from(item: Item) -> FileRecord:
    return FileRecord(
        file_id=get_s(item, "file_id"),
        chat_id=get_s(item, "chat_id"),
        uploader_id=get_s(item, "uploader_id"),
        filename=get_s(item, "filename"),
        content_type=get_s(item, "content_type"),
        size=get_n(item, "size"),
        key=get_s(item, "blob_key"),
        created_at=get_n(item, "created_at"),
        expires_at=get_n(item, "expires_at"),
        status="sent" if get_s(item, "status") == "sent" else "pending",
        message_id=opt_s(item, "message_id"),
    )
