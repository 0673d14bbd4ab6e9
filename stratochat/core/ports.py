"""Ports: what the core needs from the outside world, and what every adapter must guarantee.

Each Protocol is as narrow as its callers. One adapter class may satisfy several (the SQLite store is a
UserStore, SessionStore, ChatStore, MessageStore and UsageStore at once). The contract suites under
``tests/contracts`` check exactly what these docstrings promise, against every adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Protocol

from .models import Chat, InboxEntry, Message, MessageDraft, Session, Usage, User


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, integer milliseconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (rate limiters)."""
        ...


class UserStore(Protocol):
    async def create_user(self, user: User) -> None:
        """Store a new user. Usernames are unique (already lower-case): a taken one raises ``Conflict``
        and stores nothing, also when two callers race for it (conditional write)."""
        ...

    async def get_user(self, user_id: str) -> User | None: ...

    async def get_user_by_username(self, username: str) -> User | None: ...

    async def get_user_by_external_id(self, external_id: str) -> User | None: ...

    async def get_users(self, user_ids: Collection[str]) -> dict[str, User]:
        """The users that exist among ``user_ids``, by id; unknown ids are left out."""
        ...

    async def set_premium(self, user_id: str, is_premium: bool) -> None: ...

    async def list_users(self, limit: int = 100, after: str | None = None) -> list[User]:
        """Users ordered by username, starting after ``after``."""
        ...


class SessionStore(Protocol):
    async def create_session(self, session: Session) -> None: ...

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None. It may return a session past ``expires_at`` (stores expire late):
        callers must compare ``expires_at`` with the clock."""
        ...

    async def extend_session(self, session_id: str, expires_at: int) -> None:
        """Move the expiry of an existing session; a missing session stays missing."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Idempotent: deleting a missing session is not an error."""
        ...


class ChatStore(Protocol):
    async def create_chat(self, chat: Chat) -> tuple[Chat, bool]:
        """Store a new chat with its members (read markers at 0) and return ``(chat, True)``.
        A chat with a ``direct_key`` that another chat already has is not stored: the existing chat is
        returned with ``False``, also when two callers race (conditional write)."""
        ...

    async def get_chat(self, chat_id: str) -> Chat | None:
        """The chat with its current ``last_seq`` and last-message preview."""
        ...

    async def list_chats_for_user(self, user_id: str) -> list[InboxEntry]:
        """Every chat the user is a member of with the user's read marker, most recent activity first
        (``last_message_at``, else ``created_at``)."""
        ...

    async def set_read_seq(self, chat_id: str, user_id: str, seq: int) -> int:
        """Move a member's read marker to ``min(seq, last_seq)`` if that is ahead of it; markers never
        move back. Returns the marker after the call. Not a member: ``NotFound``."""
        ...

    async def contacts_of(self, user_id: str) -> set[str]:
        """Every user sharing at least one chat with ``user_id`` (not the user itself)."""
        ...


class MessageStore(Protocol):
    async def append_message(self, draft: MessageDraft, *, daily_limit: int | None = None) -> tuple[Message, bool]:
        """Durably store a message and return it with ``True``; only then may it be acknowledged.

        Atomic, as one unit: the chat's next ``seq`` (``last_seq + 1``; seqs of a chat start at 1, only
        grow and are never shared, whatever the number of concurrent writers or processes), the message,
        the chat's last-message preview, the sender's read marker (moved to the new seq) and the sender's
        message count of the draft's UTC day.

        Idempotent: when the sender already stored a message with the same ``client_msg_id`` in the
        chat, nothing is written and the stored message is returned with ``False`` (never refused for a
        limit). ``daily_limit``: refuse with ``QuotaExceeded``, writing nothing, when the sender's count
        for the day has reached it. Unknown chat: ``NotFound``.
        """
        ...

    async def get_by_client_msg_id(self, chat_id: str, sender_id: str, client_msg_id: str) -> Message | None:
        """The message the sender stored in the chat with that ``client_msg_id``, if any."""
        ...

    async def list_messages(
        self, chat_id: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> tuple[list[Message], bool]:
        """A page of messages, oldest first, and whether more exist beyond it.

        No cursor: the newest ``limit`` (``has_more``: older ones exist). ``before``: the newest ``limit``
        with ``seq < before`` (older ones exist). ``after``: the oldest ``limit`` with ``seq > after``
        (newer ones exist). Never both."""
        ...


class UsageStore(Protocol):
    async def get_usage(self, user_id: str, day: str) -> Usage:
        """Messages the user stored on ``day`` (UTC, ``YYYY-MM-DD``) and bytes the user stores."""
        ...


class HealthCheck(Protocol):
    async def ping(self) -> None:
        """Return when the backend answers; raise otherwise. Used by ``/readyz``."""
        ...


class Store(UserStore, SessionStore, ChatStore, MessageStore, UsageStore, HealthCheck, Protocol):
    """Every store concern together: what the composition root builds and closes."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush pending writes (everything acknowledged is already durable) and release resources."""
        ...


BrokerHandler = Callable[[str, bytes], None]


class Broker(Protocol):
    """Moves opaque payloads between the nodes of a cluster, by topic.

    Delivery is at most once: a payload may be lost (network, restart), never duplicated or altered.
    Payloads published to one topic by one publisher arrive in publish order. A node receives a payload
    only for topics it is subscribed to, its own publications included (the hub drops its own echoes).
    The delivery guarantee of the service never rests on the broker: the hub fills gaps from the store.
    """

    async def start(self, handler: BrokerHandler) -> None:
        """Connect and begin calling ``handler(topic, payload)`` on the event loop for each payload."""
        ...

    async def close(self) -> None: ...

    async def subscribe(self, topic: str) -> None:
        """Idempotent. Returns once payloads published afterwards will be delivered."""
        ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(topic, payload)`` pairs, in order. May raise if the broker is unreachable."""
        ...

    async def ping(self) -> None: ...

    def on_resubscribed(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Register a callback run after the broker reconnected and restored its subscriptions, since
        payloads may have been lost meanwhile."""
        ...


class PresenceStore(Protocol):
    """Which users have at least one open socket anywhere in the cluster.

    Entries belong to a node and expire unless that node touches them, so users of a node that died go
    offline after the timeout instead of staying online forever."""

    async def set_online(self, user_id: str, node_id: str) -> None: ...

    async def set_offline(self, user_id: str, node_id: str) -> None: ...

    async def online(self, user_ids: Collection[str]) -> set[str]:
        """The subset of ``user_ids`` online on any node."""
        ...

    async def touch(self, user_ids: Collection[str], node_id: str) -> None:
        """Keep this node's entries alive (called periodically for every local user)."""
        ...
