"""Sessions: UserSessions items with a TTL (``ttl``, epoch seconds) so DynamoDB removes dead ones.

TTL deletes late (up to days), so reads also drop a session past ``expires_at``. Reads are strongly
consistent: a logout must end the session for the very next request.
"""

from __future__ import annotations

import contextlib

from ....core.models import Session
from ....core.ports import Clock
from .client import ConditionFailed, DynamoClient
from .items import n, s, session_from, session_item, ttl_seconds
from .schema import TTL_ATTRIBUTE, TableNames


class DynamoSessions:
    def __init__(self, client: DynamoClient, tables: TableNames, clock: Clock) -> None:
        self._db = client
        self._t = tables
        self._clock = clock

    async def create_session(self, session: Session) -> None:
        await self._db.call("put_item", TableName=self._t.sessions, Item=session_item(session))

    async def get_session(self, session_id: str) -> Session | None:
        item = await self._db.get(self._t.sessions, {"session_id": s(session_id)})
        if item is None:
            return None
        session = session_from(item)
        return session if session.expires_at > self._clock.now_ms() else None

    async def extend_session(self, session_id: str, expires_at: int) -> None:
        # Only an existing session, and only forward (like the SQLite store's MAX).
        with contextlib.suppress(ConditionFailed):
            await self._db.call(
                "update_item",
                TableName=self._t.sessions,
                Key={"session_id": s(session_id)},
                UpdateExpression="SET #e = :e, #ttl = :ttl",
                ConditionExpression="attribute_exists(#id) AND #e < :e",
                ExpressionAttributeNames={"#e": "expires_at", "#ttl": TTL_ATTRIBUTE, "#id": "session_id"},
                ExpressionAttributeValues={":e": n(expires_at), ":ttl": n(ttl_seconds(expires_at))},
            )

    async def delete_session(self, session_id: str) -> None:
        await self._db.call("delete_item", TableName=self._t.sessions, Key={"session_id": s(session_id)})
