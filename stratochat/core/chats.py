"""Chats: creation (direct chats deduplicated by member pair), the inbox, read markers and typing."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

from .accounts import normalise_username
from .errors import BadRequest, NotFound
from .events import ChatEvent, ReadEvent, TypingEvent
from .hub import Hub
from .models import Chat, User
from .ports import ChatStore, Clock, PresenceStore, UserStore

TITLE_MAX = 200
# Typing notices a user may send per chat, at most one per this many seconds (the rest are ignored).
TYPING_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ChatView:
    """A chat as one member sees it."""

    chat: Chat
    members: tuple[User, ...]
    unread_count: int
    online: frozenset[str] = frozenset()


class MembershipCache:
    """chat_id -> member ids, bounded LRU. Safe to cache without invalidation because a chat's members
    never change after creation (the contract has no way to add or remove members)."""

    def __init__(self, chats: ChatStore, size: int = 50_000) -> None:
        self._chats = chats
        self._size = size
        self._cache: OrderedDict[str, frozenset[str]] = OrderedDict()

    async def members(self, chat_id: str) -> frozenset[str] | None:
        members = self._cache.get(chat_id)
        if members is not None:
            self._cache.move_to_end(chat_id)
            return members
        chat = await self._chats.get_chat(chat_id)
        if chat is None:
            return None
        return self.remember(chat)

    def cached(self, chat_id: str) -> frozenset[str] | None:
        """The members if the chat is cached, without asking the store."""
        members = self._cache.get(chat_id)
        if members is not None:
            self._cache.move_to_end(chat_id)
        return members

    def remember(self, chat: Chat) -> frozenset[str]:
        members = frozenset(chat.member_ids)
        self._cache[chat.chat_id] = members
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return members


class ChatService:
    def __init__(
        self,
        users: UserStore,
        chats: ChatStore,
        presence: PresenceStore,
        hub: Hub,
        clock: Clock,
        *,
        max_group_members: int,
    ) -> None:
        self._users = users
        self._chats = chats
        self._presence = presence
        self._hub = hub
        self._clock = clock
        self._max_members = max_group_members
        self.membership = MembershipCache(chats)
        self._typing_at: dict[tuple[str, str], float] = {}

    async def require_member(self, user_id: str, chat_id: object) -> frozenset[str]:
        """The chat's members if ``user_id`` is one; otherwise ``NotFound``, exactly as for a chat that
        does not exist, so ids cannot be probed."""
        if not isinstance(chat_id, str) or not chat_id or len(chat_id) > 64:
            raise NotFound("no such chat")
        members = await self.membership.members(chat_id)
        if members is None or user_id not in members:
            raise NotFound("no such chat")
        return members

    def cached_members(self, user_id: str, chat_id: object) -> frozenset[str] | None:
        """``require_member`` answered from the cache alone: the members, ``NotFound``, or None when
        only the store can tell."""
        if not isinstance(chat_id, str) or not chat_id or len(chat_id) > 64:
            raise NotFound("no such chat")
        members = self.membership.cached(chat_id)
        if members is not None and user_id not in members:
            raise NotFound("no such chat")
        return members

    async def create_chat(self, creator: User, usernames: object, title: object) -> tuple[ChatView, bool]:
        if not isinstance(usernames, list) or not all(isinstance(u, str) for u in usernames):
            raise BadRequest("members must be a list of usernames")
        if title is not None and not isinstance(title, str):
            raise BadRequest("title must be a string")
        clean_title = title.strip() if isinstance(title, str) else None
        if clean_title is not None and not 1 <= len(clean_title) <= TITLE_MAX:
            raise BadRequest(f"title must be 1-{TITLE_MAX} characters")
        names = {normalise_username(u) for u in usernames} - {creator.username}
        if not names:
            raise BadRequest("a chat needs at least one other member")
        if len(names) + 1 > self._max_members:
            raise BadRequest(f"a chat has at most {self._max_members} members")
        others = []
        for name in sorted(names):
            user = await self._users.get_user_by_username(name)
            if user is None:
                raise BadRequest(f"no user named '{name}'")
            others.append(user)
        is_group = len(others) > 1 or clean_title is not None
        member_ids = tuple(sorted([creator.user_id, *(u.user_id for u in others)]))
        chat = Chat(
            chat_id=uuid.uuid4().hex,
            is_group=is_group,
            title=clean_title,
            member_ids=member_ids,
            created_at=self._clock.now_ms(),
            created_by=creator.user_id,
            direct_key=None if is_group else ":".join(member_ids),
        )
        stored, created = await self._chats.create_chat(chat)
        self.membership.remember(stored)
        members = tuple(sorted([creator, *others], key=lambda u: u.username))
        online = frozenset(await self._presence.online(stored.member_ids))
        if created:
            self._hub.deliver(stored.member_ids, ChatEvent(stored, members, online))
            return ChatView(stored, members, 0, online), True
        entry = next(
            (e for e in await self._chats.list_chats_for_user(creator.user_id) if e.chat.chat_id == stored.chat_id),
            None,
        )
        return ChatView(stored, members, entry.unread_count if entry else 0, online), False

    async def inbox(self, user: User) -> list[ChatView]:
        entries = await self._chats.list_chats_for_user(user.user_id)
        member_ids = {m for e in entries for m in e.chat.member_ids}
        users = await self._users.get_users(member_ids)
        online = frozenset(await self._presence.online(member_ids)) if member_ids else frozenset()
        views = []
        for e in entries:
            self.membership.remember(e.chat)
            members = tuple(sorted((users[m] for m in e.chat.member_ids if m in users), key=lambda u: u.username))
            views.append(ChatView(e.chat, members, e.unread_count, online))
        return views

    async def chat_positions(self, user_id: str) -> dict[str, int]:
        """``{chat_id: last_seq}`` of every chat of the user (the hub's gap-detection baseline)."""
        return {e.chat.chat_id: e.chat.last_seq for e in await self._chats.list_chats_for_user(user_id)}

    async def mark_read(self, user: User, chat_id: object, seq: object) -> int:
        members = await self.require_member(user.user_id, chat_id)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise BadRequest("seq must be a non-negative integer")
        assert isinstance(chat_id, str)
        before = await self._chats.set_read_seq(chat_id, user.user_id, seq)
        self._hub.deliver(members, ReadEvent(chat_id, user.user_id, before))
        return before

    async def typing(self, user: User, chat_id: object) -> None:
        members = await self.require_member(user.user_id, chat_id)
        assert isinstance(chat_id, str)
        now = self._clock.monotonic()
        key = (user.user_id, chat_id)
        if now - self._typing_at.get(key, -1e9) < TYPING_INTERVAL_S:
            return
        if len(self._typing_at) > 100_000:
            self._typing_at = {k: t for k, t in self._typing_at.items() if now - t < TYPING_INTERVAL_S}
        self._typing_at[key] = now
        self._hub.deliver((m for m in members if m != user.user_id), TypingEvent(chat_id, user.user_id))
