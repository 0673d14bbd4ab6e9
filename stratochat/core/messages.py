"""Sending and reading messages."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from .chats import ChatService
from .errors import BadRequest, RateLimited, TooLarge
from .events import MessageEvent
from .hub import Hub
from .ids import message_ids
from .limits import TierPolicy, TokenBuckets
from .models import FileRef, Message, MessageDraft, MessageType, User
from .ports import Clock, MessageStore, StoredCallback

if TYPE_CHECKING:
    from .files import FileService

CLIENT_MSG_ID_MAX = 128
HISTORY_MAX = 200


def check_client_msg_id(raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw) <= CLIENT_MSG_ID_MAX or not raw.isprintable():
        raise BadRequest(f"client_msg_id must be 1-{CLIENT_MSG_ID_MAX} printable characters")
    return raw


class MessageService:
    def __init__(
        self,
        messages: MessageStore,
        chats: ChatService,
        hub: Hub,
        clock: Clock,
        *,
        max_chars: int,
        tiers: TierPolicy,
        burst: TokenBuckets,
        files: FileService | None = None,
    ) -> None:
        self._messages = messages
        self._files = files
        self._chats = chats
        self._hub = hub
        self._clock = clock
        self._max_chars = max_chars
        self._tiers = tiers
        self._burst = burst

    def check_content(self, content: object) -> str:
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        if len(content) > self._max_chars:
            raise TooLarge(f"content is {len(content)} characters; the limit is {self._max_chars}")
        if not content.strip():
            raise BadRequest("content must not be empty")
        return content

    def check_caption(self, content: object) -> str:
        """A file message's optional caption: absent or blank is none."""
        if content is None:
            return ""
        if not isinstance(content, str):
            raise BadRequest("content must be a string")
        if len(content) > self._max_chars:
            raise TooLarge(f"content is {len(content)} characters; the limit is {self._max_chars}")
        return content if content.strip() else ""

    async def send(
        self,
        user: User,
        chat_id: object,
        content: object,
        client_msg_id: object = None,
        *,
        origin: str | None = None,
        file_id: object = None,
    ) -> tuple[Message, bool]:
        """Store a text message, or with ``file_id`` a file message (``content`` its optional caption),
        and fan it out to every member's sockets but ``origin`` (the sending connection, which gets an
        ack instead). Returns ``(message, created)``; a retry with a stored ``client_msg_id`` returns
        the original with ``created=False`` and fans out nothing."""
        text = self.check_content(content) if file_id is None else self.check_caption(content)
        cmid = check_client_msg_id(client_msg_id)
        members = await self._chats.require_member(user.user_id, chat_id)
        assert isinstance(chat_id, str)
        wait = self._burst.take(user.user_id)
        if wait > 0:
            if cmid is not None:
                # A retry of a stored message is never refused for a limit.
                stored = await self._messages.get_by_client_msg_id(chat_id, user.user_id, cmid)
                if stored is not None:
                    return stored, False
            raise RateLimited("sending too fast; slow down", wait)
        file: FileRef | None = None
        if file_id is not None:
            try:
                stored = await self._retried(chat_id, user.user_id, cmid)
                if stored is not None:
                    self._burst.give_back(user.user_id)
                    return stored, False
                if self._files is None:
                    raise BadRequest("file messages are not available on this server")
                file = await self._files.attachment(user, chat_id, file_id)
            except BaseException:
                self._burst.give_back(user.user_id)
                raise
        return await self._store(user, members, self._draft(user, chat_id, text, cmid, file), origin)

    def submit(
        self,
        user: User,
        chat_id: object,
        content: object,
        client_msg_id: object = None,
        *,
        origin: str | None = None,
        then: StoredCallback | None = None,
    ) -> asyncio.Future[tuple[Message, bool]] | None:
        """``send`` of a text message, started now without a coroutine of its own (the socket hot path).
        The checks run before this returns and raise as ``send`` would; the future resolves after the
        fan-out, and ``then`` (the ack) runs right after the fan-out, in the same loop turn where the
        store allows (``MessageStore.submit_message``). None when only the store can answer a check
        (membership not cached, the sender over the burst limit): use ``send``; ``then`` is not called."""
        text = self.check_content(content)
        cmid = check_client_msg_id(client_msg_id)
        members = self._chats.cached_members(user.user_id, chat_id)
        if members is None or self._burst.take(user.user_id) > 0:
            return None
        assert isinstance(chat_id, str)
        return self._start(user, members, self._draft(user, chat_id, text, cmid, None), origin, then)

    def _draft(self, user: User, chat_id: str, text: str, cmid: str | None, file: FileRef | None) -> MessageDraft:
        # Positional, in MessageDraft's field order: this runs once per message.
        kind: MessageType = "text" if file is None else "file"
        now = self._clock.now_ms()
        return MessageDraft(message_ids.next(), chat_id, user.user_id, user.username, kind, text, now, cmid, file)

    async def _store(
        self, user: User, members: frozenset[str], draft: MessageDraft, origin: str | None
    ) -> tuple[Message, bool]:
        # Shielded: a caller that goes away must not cancel a write that may land (and must fan out).
        return await asyncio.shield(self._start(user, members, draft, origin))

    def _start(
        self,
        user: User,
        members: frozenset[str],
        draft: MessageDraft,
        origin: str | None,
        then: StoredCallback | None = None,
    ) -> asyncio.Future[tuple[Message, bool]]:
        """Hand the draft to the store; the fan-out (or the burst refund) follows from its future."""
        limits = self._tiers.limits_for(user)
        try:
            fut = self._messages.submit_message(
                draft,
                daily_limit=limits.daily_messages,
                storage_limit=limits.storage_bytes if draft.file is not None else None,
                then=partial(self._stored, user.user_id, members, origin, draft.message_id, then),
            )
        except BaseException:
            self._burst.give_back(user.user_id)
            raise
        if origin is not None:
            self._hub.sending(draft.message_id, origin)
        return fut

    def _stored(
        self,
        sender_id: str,
        members: frozenset[str],
        origin: str | None,
        message_id: str,
        then: StoredCallback | None,
        fut: asyncio.Future[tuple[Message, bool]],
    ) -> None:
        """After the store answered: fan a new message out; refund the burst token of anything else;
        then the caller's ``then``."""
        try:
            if not fut.cancelled() and fut.exception() is None:
                message, created = fut.result()
                if created:
                    self._hub.deliver(members, MessageEvent(message), exclude=origin)
            else:
                created = False
            if origin is not None:
                self._hub.sent(message_id)
            if not created:
                self._burst.give_back(sender_id)
        finally:
            if then is not None:
                then(fut)

    async def _retried(self, chat_id: str, sender_id: str, cmid: str | None) -> Message | None:
        # A file is sent once: the retry of a stored file message must be answered before the file's
        # checks, which it would fail (the file is no longer pending).
        return None if cmid is None else await self._messages.get_by_client_msg_id(chat_id, sender_id, cmid)

    async def history(
        self, user: User, chat_id: object, *, before: object = None, after: object = None, limit: object = 50
    ) -> tuple[list[Message], bool]:
        await self._chats.require_member(user.user_id, chat_id)
        assert isinstance(chat_id, str)
        for name, value in (("before", before), ("after", after)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise BadRequest(f"{name} must be a non-negative integer")
        if before is not None and after is not None:
            raise BadRequest("use before= or after=, not both")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_MAX:
            raise BadRequest(f"limit must be 1-{HISTORY_MAX}")
        return await self._messages.list_messages(
            chat_id,
            before=before if isinstance(before, int) else None,
            after=after if isinstance(after, int) else None,
            limit=limit,
        )
