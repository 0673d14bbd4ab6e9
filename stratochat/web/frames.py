"""The wire format: public JSON shapes of users, chats and messages, and socket frames.

Outbound frames are built with orjson once per event, however many sockets receive them.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..core.chats import ChatView
from ..core.errors import RateLimited, StratochatError
from ..core.events import ChatEvent, Event, MessageEvent, PresenceEvent, ReadEvent, TypingEvent
from ..core.models import Limits as LimitsModel
from ..core.models import Message, Usage, User, iso_ms


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# (second, "YYYY-MM-DDTHH:MM:SS.") of the last timestamp formatted; replaced whole, never mutated.
_iso_second: tuple[int, str] = (-1, "")
# The last message serialised and its JSON: its message frame and its sender's ack are built one
# right after the other (no await between), so the second one reuses the first's work.
_last_body: tuple[Message | None, str] = (None, "")


def iso_ms_fast(ms: int) -> str:
    """``iso_ms(ms)``, reusing the formatted date and time while the second lasts (a profile of the
    pairs bench put ``iso_ms`` at 11% of the event loop's time, twice per message)."""
    global _iso_second
    second, rem = divmod(ms, 1000)
    cached, prefix = _iso_second
    if cached != second:
        prefix = iso_ms(second * 1000)[:-4]
        _iso_second = (second, prefix)
    return f"{prefix}{rem:03d}Z"


def message_body(m: Message) -> str:
    """``message_json(m)`` as JSON text, computed once for the message frame and the ack alike."""
    global _last_body
    last, body = _last_body
    if last is not m:
        body = dumps(message_json(m))
        _last_body = (m, body)
    return body


def user_json(user: User) -> dict[str, Any]:
    return {"user_id": user.user_id, "username": user.username, "is_premium": user.is_premium}


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "message_id": m.message_id,
        "chat_id": m.chat_id,
        "seq": m.seq,
        "sender_id": m.sender_id,
        "sender": m.sender,
        "message_type": m.message_type,
        "content": m.content,
        "created_at": iso_ms_fast(m.created_at),
        "client_msg_id": m.client_msg_id,
    }
    if m.file is not None:
        out["file"] = {
            "file_id": m.file.file_id,
            "filename": m.file.filename,
            "content_type": m.file.content_type,
            "size": m.file.size,
        }
    return out


def chat_json(view: ChatView) -> dict[str, Any]:
    c = view.chat
    return {
        "chat_id": c.chat_id,
        "is_group": c.is_group,
        "title": c.title,
        "members": [{**user_json(u), "online": u.user_id in view.online} for u in view.members],
        "last_message_content": c.last_message_content,
        "last_message_timestamp": iso_ms(c.last_message_at) if c.last_message_at is not None else None,
        "last_seq": c.last_seq,
        "unread_count": view.unread_count,
        "created_at": iso_ms(c.created_at),
    }


def limits_json(limits: LimitsModel, usage: Usage) -> dict[str, Any]:
    return {
        "limits": {
            "daily_messages": limits.daily_messages,
            "storage_bytes": limits.storage_bytes,
            "max_file_bytes": limits.max_file_bytes,
        },
        "usage": {"messages_today": usage.messages_today, "storage_bytes": usage.storage_bytes},
    }


def encode_event(event: Event) -> str:
    if isinstance(event, MessageEvent):
        return '{"type":"message","message":' + message_body(event.message) + "}"
    if isinstance(event, ChatEvent):
        view = ChatView(event.chat, event.members, 0, event.online)
        return dumps({"type": "chat", "chat": chat_json(view)})
    if isinstance(event, TypingEvent):
        return dumps({"type": "typing", "chat_id": event.chat_id, "user_id": event.user_id})
    if isinstance(event, ReadEvent):
        return dumps({"type": "read", "chat_id": event.chat_id, "user_id": event.user_id, "seq": event.seq})
    if isinstance(event, PresenceEvent):
        return dumps({"type": "presence", "user_id": event.user_id, "online": event.online})
    raise TypeError(f"no frame for {event!r}")


def ack_frame(client_msg_id: str | None, message: Message) -> str:
    return '{"type":"ack","client_msg_id":' + dumps(client_msg_id) + ',"message":' + message_body(message) + "}"


def error_frame(code: str, detail: str, client_msg_id: Any = None, retry_after: float | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    if isinstance(client_msg_id, str):
        frame["client_msg_id"] = client_msg_id
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return dumps(frame)


def error_frame_for(exc: StratochatError, client_msg_id: Any = None) -> str:
    retry = round(exc.retry_after, 3) if isinstance(exc, RateLimited) else None
    return error_frame(exc.code, exc.detail, client_msg_id, retry)
