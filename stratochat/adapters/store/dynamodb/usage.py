"""Usage: the sender's UsageCounters item of a UTC day (written by the append transaction) and the
``storage_bytes`` of the user's WebSocketUsers item."""

from __future__ import annotations

import asyncio

from ....core.models import Usage
from .client import DynamoClient
from .items import get_n, s
from .schema import TableNames


class DynamoUsage:
    def __init__(self, client: DynamoClient, tables: TableNames) -> None:
        self._db = client
        self._t = tables

    async def get_usage(self, user_id: str, day: str) -> Usage:
        counter, user = await asyncio.gather(
            self._db.get(
                self._t.usage, {"user_id": s(user_id), "day": s(day)}, projection="#c", names={"#c": "message_count"}
            ),
            self._db.get(self._t.users, {"user_id": s(user_id)}, projection="#b", names={"#b": "storage_bytes"}),
        )
        return Usage(get_n(counter, "message_count") if counter else 0, get_n(user, "storage_bytes") if user else 0)
