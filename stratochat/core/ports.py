"""Ports: what the core needs from the outside world, and what every adapter must guarantee.

Each Protocol is as narrow as its callers. One adapter class may satisfy several (the SQLite store is a
UserStore, SessionStore, ChatStore, MessageStore and UsageStore at once). The contract suites under
``tests/contracts`` check exactly what these docstrings promise, against every adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .models import Chat, FileRecord, InboxEntry, Message, MessageDraft, Session, UploadGrant, Usage, User

# What ``MessageStore.submit_message`` calls when a submitted message is stored or refused.
StoredCallback = Callable[[asyncio.Future[tuple[Message, bool]]], None]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock time, integer milliseconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (rate limiters)."""
        ...


class UserStore(Protocol):
    async def create_user(self, user: User) -> None:
        """Store a new user. ``user_id``, ``username`` (already lower-case) and ``external_id`` (when set)
        are each unique: a taken one raises ``Conflict`` and stores nothing, also when two callers race
        for it (conditional write)."""
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
    async def append_message(
        self, draft: MessageDraft, *, daily_limit: int | None = None, storage_limit: int | None = None
    ) -> tuple[Message, bool]:
        """Durably store a message and return it with ``True``; only then may it be acknowledged.

        Atomic, as one unit: the chat's next ``seq`` (``last_seq + 1``; seqs of a chat start at 1, only
        grow and are never shared, whatever the number of concurrent writers or processes), the message,
        the chat's last-message preview (``draft.preview``), the sender's read marker (moved to the new
        seq) and the sender's message count of the draft's UTC day. For a file message (``draft.file``
        set) also, in the same unit: its file record flips from ``pending`` to ``sent`` (with the
        message's id) and the sender's stored bytes grow by its ``size``.

        Idempotent: when the sender already stored a message with the same ``client_msg_id`` in the
        chat, nothing is written and the stored message is returned with ``False`` (never refused for a
        limit). ``daily_limit``: refuse with ``QuotaExceeded``, writing nothing, when the sender's count
        for the day has reached it. ``storage_limit`` (file messages): refuse with ``QuotaExceeded``,
        writing nothing, when the sender's stored bytes plus the file's size would pass it. A file whose
        record is missing, not ``pending``, past its ``expires_at`` (compared with ``draft.created_at``),
        uploaded by someone else, granted for another chat, or whose filename, content type or size
        differ from ``draft.file``: ``BadRequest``, writing nothing; so two concurrent sends of one file
        store one message. Unknown chat: ``NotFound``.
        """
        ...

    def submit_message(
        self,
        draft: MessageDraft,
        *,
        daily_limit: int | None = None,
        storage_limit: int | None = None,
        then: StoredCallback | None = None,
    ) -> asyncio.Future[tuple[Message, bool]]:
        """``append_message`` started now, as a future that resolves (or fails) as it would return:
        the socket hot path keeps many sends in flight without a coroutine per message. A store that
        orders writes (SQLite's single writer) applies submissions in call order. Must be called from
        the event loop; a store that is not open fails the call at once (``Unavailable``).

        ``then``, when given, is called once with the future as soon as it is done (also when it
        failed or was cancelled), before the future's own done-callbacks, and where the store can, in
        the same loop turn as the write's completion: each done-callback waits a turn of the loop, which
        under load is many milliseconds. It must not raise."""
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
        """Messages the user stored on ``day`` (UTC, ``YYYY-MM-DD``) and bytes the user stores (the
        sizes of the files of the user's messages, charged by ``append_message``)."""
        ...


class FileStore(Protocol):
    """Upload grants and the files they became. A grant is recorded ``pending`` before its upload URL is
    handed out, so every blob that can ever be uploaded has a record, and a record no message took is
    purged (blob first) once void: nothing stays behind an unused grant."""

    async def create_file(self, record: FileRecord) -> None:
        """Store a new ``pending`` record. ``file_id`` is new (a random id); a taken one: ``Conflict``."""
        ...

    async def get_file(self, file_id: str) -> FileRecord | None:
        """The record, pending or sent; pending ones past ``expires_at`` may still be returned until
        purged (callers compare ``expires_at`` with the clock)."""
        ...

    async def expired_files(self, before: int, limit: int = 500) -> list[FileRecord]:
        """Up to ``limit`` ``pending`` records with ``expires_at < before``, oldest first (purge)."""
        ...

    async def delete_pending_files(self, file_ids: Collection[str]) -> None:
        """Delete those of ``file_ids`` that are still ``pending``; a ``sent`` record is never deleted,
        a missing one is no error."""
        ...


class HealthCheck(Protocol):
    async def ping(self) -> None:
        """Return when the backend answers; raise otherwise. Used by ``/readyz``."""
        ...


class Store(UserStore, SessionStore, ChatStore, MessageStore, UsageStore, FileStore, HealthCheck, Protocol):
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

    @property
    def alone(self) -> bool:
        """True while no other node can receive this broker's publications (an in-process broker with
        no peer): the hub then skips building and publishing them."""
        ...

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


class BlobStore(Protocol):
    """Private object storage for files, reached by browsers directly with short-lived signed URLs, so
    file bytes never pass through the chat servers' request handlers (an adapter served by the app
    itself, such as the local-disk one, is the exception, and says so by its ``origins``).

    Nothing is public: a URL is the only authorization, it works only until its expiry (stores expire
    with second precision), and changing any part of it makes it stop working. Keys are the caller's
    (``[A-Za-z0-9._-]`` segments joined by ``/``); adapters may keep them under a prefix of their own.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def presign_upload(
        self, key: str, *, content_type: str, size: int, expires_in: int, origin: str
    ) -> UploadGrant:
        """A grant to store one object at ``key``: ``multipart/form-data`` POSTed to ``grant.url`` with
        every entry of ``grant.fields`` in order and then the file as the field ``file``, for about
        ``expires_in`` seconds (``grant.expires_at``, ms). The storage itself refuses a body of another
        size than ``size`` bytes or of another content type than ``content_type`` (the ``Content-Type``
        field, which ``fields`` carries), and stores nothing then. ``url`` is absolute; ``origin``
        (``https://chat.example.com``) is where this app is reached, for adapters it serves itself."""
        ...

    async def presign_download(
        self, key: str, *, content_type: str, disposition: str, expires_in: int, origin: str
    ) -> str:
        """An absolute URL that answers the object's bytes with exactly these ``Content-Type`` and
        ``Content-Disposition`` headers for about ``expires_in`` seconds. The key need not exist yet;
        a missing object answers an error status."""
        ...

    async def stat(self, key: str) -> int | None:
        """The stored object's size in bytes, or None when there is none at ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing object is not an error."""
        ...

    async def ping(self) -> None:
        """Return when the storage answers; raise otherwise (``/readyz``)."""
        ...

    def origins(self) -> list[str]:
        """The origins (``scheme://host[:port]``) signed URLs point at, when they are not this app's:
        the browser client's Content-Security-Policy must allow them. Empty when the app serves them.
        Valid once ``start`` returned."""
        ...


# Identity provider -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginStart:
    """A login sent to the provider, and what must be kept (short-lived, tamper-proof) until it returns."""

    url: str  # the provider's authorization endpoint, every parameter included
    state: str
    nonce: str
    code_verifier: str  # PKCE (S256): the provider only sees its hash until the code exchange


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who signed in: the ID token's claims, every check passed."""

    issuer: str
    subject: str  # ``sub``: stable and unique within the issuer
    claims: Mapping[str, Any]
    # What the token endpoint returned (id_token, access_token, refresh_token when present).
    tokens: Mapping[str, str]


class IdentityProvider(Protocol):
    """An OpenID Connect provider (Amazon Cognito is one): authorization code flow with PKCE.

    Stateless between calls: the caller keeps ``LoginStart.state``, ``nonce`` and ``code_verifier`` and
    hands them back, so any node can finish a login another node began."""

    @property
    def name(self) -> str:
        """Shown to people on the sign-in button ("Cognito", "Single sign-on", ...)."""
        ...

    @property
    def issuer(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def begin_login(self, redirect_uri: str) -> LoginStart:
        """Fresh random ``state``, ``nonce`` and PKCE verifier, and the authorization URL carrying them
        (with the S256 challenge). May fetch the provider's metadata; unreachable: ``Unavailable``."""
        ...

    async def finish_login(self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str) -> VerifiedIdentity:
        """Exchange the code at the token endpoint and verify the ID token: its signature against the
        issuer's published keys (an unknown key id makes it refetch them, at a bounded rate: key
        rotation), ``iss``, ``aud`` (and ``azp``), ``exp``, ``iat``, ``nonce`` and, when present,
        ``token_use`` (Cognito). The provider refusing the code: ``BadRequest``; a token failing a check:
        ``Unauthorized``; the provider unreachable: ``Unavailable``."""
        ...

    async def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser so the provider ends its own session too (it then returns to
        ``post_logout_redirect_uri``), or None when the provider has no such endpoint."""
        ...
