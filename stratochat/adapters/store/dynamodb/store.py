"""``DynamoStore``: the Store port on DynamoDB, composed of one part per concern sharing one client.

How it differs from the port: nothing, by design (the same contract suite runs against it and the SQLite
store). Reads that must see earlier writes are strongly consistent; sessions past ``expires_at`` read as
missing (TTL deletes late); the last-message preview is capped at ``items.PREVIEW_CHARS`` characters.
See ``messages.py`` for how appends stay gapless and atomic, and docs/dynamodb.md for the tables,
access patterns and their cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from ....core.errors import Unavailable
from ....core.models import Chat, FileRecord, InboxEntry, Message, MessageDraft, Session, Usage, User
from ....core.ports import Clock, StoredCallback
from .chats import DynamoChats
from .client import DynamoClient
from .files import DynamoFiles
from .items import s
from .messages import DynamoMessages
from .schema import TableNames
from .sessions import DynamoSessions
from .usage import DynamoUsage
from .users import DynamoUsers


class DynamoStore:
    def __init__(self, table_prefix: str, clock: Clock, *, region: str | None = None) -> None:
        self.tables = TableNames.for_prefix(table_prefix)
        self._client = DynamoClient(region)
        self._users = DynamoUsers(self._client, self.tables)
        self._sessions = DynamoSessions(self._client, self.tables, clock)
        self._chats = DynamoChats(self._client, self.tables)
        self._messages = DynamoMessages(self._client, self.tables)
        self._usage = DynamoUsage(self._client, self.tables)
        self._files = DynamoFiles(self._client, self.tables)
        self._state = "new"

    # lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._state != "new":
            raise RuntimeError(f"DynamoStore cannot start from state {self._state}")
        await self._client.start()
        self._state = "open"

    async def close(self) -> None:
        # Every acknowledged write was already committed by DynamoDB: there is nothing to flush.
        if self._state != "open":
            return
        self._state = "closed"
        await self._client.close()

    # HealthCheck -----------------------------------------------------------------------------------
    async def ping(self) -> None:
        """A data-plane read of a key that never exists (half a read unit), not DescribeTable, whose
        control-plane rate limit a load balancer's health checks could exhaust."""
        if self._state != "open":
            raise Unavailable("store is not open")
        await self._client.call(
            "get_item",
            TableName=self.tables.unique,
            Key={"claim": s("ping")},
            ProjectionExpression="#k",
            ExpressionAttributeNames={"#k": "claim"},
        )

    # UserStore -------------------------------------------------------------------------------------
    async def create_user(self, user: User) -> None:
        await self._users.create_user(user)

    async def get_user(self, user_id: str) -> User | None:
        return await self._users.get_user(user_id)

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._users.get_user_by_username(username)

    async def get_user_by_external_id(self, external_id: str) -> User | None:
        return await self._users.get_user_by_external_id(external_id)

    async def get_users(self, user_ids: Collection[str]) -> dict[str, User]:
        return await self._users.get_users(user_ids)

    async def set_premium(self, user_id: str, is_premium: bool) -> None:
        await self._users.set_premium(user_id, is_premium)

    async def list_users(self, limit: int = 100, after: str | None = None) -> list[User]:
        return await self._users.list_users(limit, after)

    # SessionStore ----------------------------------------------------------------------------------
    async def create_session(self, session: Session) -> None:
        await self._sessions.create_session(session)

    async def get_session(self, session_id: str) -> Session | None:
        return await self._sessions.get_session(session_id)

    async def extend_session(self, session_id: str, expires_at: int) -> None:
        await self._sessions.extend_session(session_id, expires_at)

    async def delete_session(self, session_id: str) -> None:
        await self._sessions.delete_session(session_id)

    # ChatStore -------------------------------------------------------------------------------------
    async def create_chat(self, chat: Chat) -> tuple[Chat, bool]:
        return await self._chats.create_chat(chat)

    async def get_chat(self, chat_id: str) -> Chat | None:
        return await self._chats.get_chat(chat_id)

    async def list_chats_for_user(self, user_id: str) -> list[InboxEntry]:
        return await self._chats.list_chats_for_user(user_id)

    async def set_read_seq(self, chat_id: str, user_id: str, seq: int) -> int:
        return await self._chats.set_read_seq(chat_id, user_id, seq)

    async def contacts_of(self, user_id: str) -> set[str]:
        return await self._chats.contacts_of(user_id)

    # MessageStore ----------------------------------------------------------------------------------
    async def append_message(
        self, draft: MessageDraft, *, daily_limit: int | None = None, storage_limit: int | None = None
    ) -> tuple[Message, bool]:
        return await self._messages.append_message(draft, daily_limit=daily_limit, storage_limit=storage_limit)

    def submit_message(
        self,
        draft: MessageDraft,
        *,
        daily_limit: int | None = None,
        storage_limit: int | None = None,
        then: StoredCallback | None = None,
    ) -> asyncio.Future[tuple[Message, bool]]:
        # Each message is its own transaction here; a task keeps it going while the socket reads on.
        task = asyncio.ensure_future(self.append_message(draft, daily_limit=daily_limit, storage_limit=storage_limit))
        if then is not None:
            task.add_done_callback(then)  # first of its callbacks; a task's completion is a loop turn anyway
        return task

    async def get_by_client_msg_id(self, chat_id: str, sender_id: str, client_msg_id: str) -> Message | None:
        return await self._messages.get_by_client_msg_id(chat_id, sender_id, client_msg_id)

    async def list_messages(
        self, chat_id: str, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> tuple[list[Message], bool]:
        return await self._messages.list_messages(chat_id, before=before, after=after, limit=limit)

    # UsageStore ------------------------------------------------------------------------------------
    async def get_usage(self, user_id: str, day: str) -> Usage:
        return await self._usage.get_usage(user_id, day)

    # FileStore -------------------------------------------------------------------------------------
    async def create_file(self, record: FileRecord) -> None:
        await self._files.create_file(record)

    async def get_file(self, file_id: str) -> FileRecord | None:
        return await self._files.get_file(file_id)

    async def expired_files(self, before: int, limit: int = 500) -> list[FileRecord]:
        return await self._files.expired_files(before, limit)

    async def delete_pending_files(self, file_ids: Collection[str]) -> None:
        await self._files.delete_pending_files(file_ids)
