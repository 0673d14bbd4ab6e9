"""What the core tells connected clients. ``stratochat.web.frames`` turns each into a wire frame."""

from __future__ import annotations

from dataclasses import dataclass

from .models import Chat, Message, User


@dataclass(frozen=True, slots=True)
class MessageEvent:
    message: Message


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """A chat was created; every member sees it with no unread messages."""

    chat: Chat
    members: tuple[User, ...]
    online: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TypingEvent:
    chat_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ReadEvent:
    chat_id: str
    user_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    user_id: str
    online: bool


Event = MessageEvent | ChatEvent | TypingEvent | ReadEvent | PresenceEvent
