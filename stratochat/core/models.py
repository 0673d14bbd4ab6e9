"""Frozen value objects of the domain. Times are integer milliseconds since the epoch (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

MessageType = Literal["text", "file"]

# Characters of the last message a chat keeps as its inbox preview (``last_message_content``).
PREVIEW_CHARS = 200


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix, as the contract wants."""
    # isoformat of the whole second is 2.5x quicker than strftime; the milliseconds come from the integer,
    # where a float division would round some of them down.
    return datetime.fromtimestamp(ms // 1000, UTC).isoformat()[:19] + f".{ms % 1000:03d}Z"


def utc_day(ms: int) -> str:
    """The UTC calendar day (``YYYY-MM-DD``) that ``ms`` falls in; daily quotas roll over at 00:00 UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    is_premium: bool = False
    created_at: int = 0
    # None for accounts that only sign in through an identity provider.
    password_hash: str | None = field(default=None, repr=False)
    # The identity provider's subject ("issuer|sub"), when the account is linked to one.
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A server-side session. ``session_id`` is the SHA-256 of the bearer token, never the token itself."""

    session_id: str
    user_id: str
    created_at: int
    expires_at: int
    # Extra data an identity provider needs (tokens for logout/refresh); opaque to the core.
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    chat_id: str
    is_group: bool
    title: str | None
    member_ids: tuple[str, ...]
    created_at: int
    created_by: str
    last_seq: int = 0
    last_message_content: str | None = None
    last_message_at: int | None = None
    # Set for direct chats only: the sorted pair of member ids, unique across chats.
    direct_key: str | None = None

    @property
    def activity_at(self) -> int:
        return self.last_message_at if self.last_message_at is not None else self.created_at


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A chat as one member sees it: the chat and that member's read marker."""

    chat: Chat
    read_seq: int

    @property
    def unread_count(self) -> int:
        return max(0, self.chat.last_seq - self.read_seq)


@dataclass(frozen=True, slots=True)
class FileRef:
    file_id: str
    filename: str
    content_type: str
    size: int


# MessageDraft and Message are built once or twice per message on the hot path, so they are not
# ``frozen`` (a frozen dataclass sets each field through ``object.__setattr__``, which made building
# them a tenth of the ``pairs`` bench's profile). Treat them as immutable all the same: they hash by
# value as frozen ones would.
@dataclass(slots=True, unsafe_hash=True)
class MessageDraft:
    """A message before the store gives it its ``seq``."""

    message_id: str
    chat_id: str
    sender_id: str
    sender: str
    message_type: MessageType
    content: str
    created_at: int
    client_msg_id: str | None = None
    file: FileRef | None = None

    @property
    def preview(self) -> str:
        """The chat's last-message preview (inbox): the first ``PREVIEW_CHARS`` characters of the
        content, or a file message's filename when it has no caption. Every store keeps exactly this
        (a whole 4,000-character message on a chat row rewritten per message would cost DynamoDB four
        write units more per message, and an inbox line shows a few words anyway)."""
        if self.file is not None and not self.content.strip():
            return self.file.filename
        return self.content[:PREVIEW_CHARS]


@dataclass(slots=True, unsafe_hash=True)
class Message:
    message_id: str
    chat_id: str
    seq: int
    sender_id: str
    sender: str
    message_type: MessageType
    content: str
    created_at: int
    client_msg_id: str | None = None
    file: FileRef | None = None

    @classmethod
    def from_draft(cls, draft: MessageDraft, seq: int) -> Message:
        # Positional: once per message on the hot path, and keyword arguments cost twice as much.
        return cls(
            draft.message_id,
            draft.chat_id,
            seq,
            draft.sender_id,
            draft.sender,
            draft.message_type,
            draft.content,
            draft.created_at,
            draft.client_msg_id,
            draft.file,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    messages_today: int = 0
    storage_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Limits:
    daily_messages: int | None
    storage_bytes: int
    max_file_bytes: int


FileStatus = Literal["pending", "sent"]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An upload grant and, once a message carries it, the file it granted.

    ``pending``: granted, maybe uploaded, in no message yet; void (and purged with its blob) from
    ``expires_at`` on. ``sent``: a message carries it; it stays, charged to ``uploader_id``.
    """

    file_id: str
    chat_id: str
    uploader_id: str
    filename: str
    content_type: str
    size: int
    key: str  # the blob's key in the BlobStore
    created_at: int
    expires_at: int
    status: FileStatus = "pending"
    message_id: str | None = None

    def ref(self) -> FileRef:
        return FileRef(self.file_id, self.filename, self.content_type, self.size)


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a BlobStore signs: POST ``fields`` (in order) and then the file, as multipart, to ``url``."""

    url: str
    fields: dict[str, str]
    expires_at: int


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload grant as the uploader receives it."""

    file_id: str
    url: str
    fields: dict[str, str]
    expires_at: int
