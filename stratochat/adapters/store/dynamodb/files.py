"""Files: a Files item per upload grant, ``pending`` until a message takes it (``messages.py`` flips it to
``sent`` inside the append transaction), found for the purge through the sparse ``pending_by_expiry`` index."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection

from ....core.errors import Conflict
from ....core.models import FileRecord
from .client import ConditionFailed, DynamoClient
from .items import file_from, file_item, n, s
from .schema import FILES_PENDING, PENDING_ATTR, PENDING_VALUE, TableNames

# Deletes run concurrently, this many at a time (BatchWriteItem has no conditions).
DELETE_CONCURRENCY = 16


class DynamoFiles:
    def __init__(self, client: DynamoClient, tables: TableNames) -> None:
        self._db = client
        self._t = tables

    async def create_file(self, record: FileRecord) -> None:
        try:
            await self._db.call(
                "put_item",
                TableName=self._t.files,
                Item=file_item(record),
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": "file_id"},
            )
        except ConditionFailed:
            raise Conflict("file id is taken") from None

    async def get_file(self, file_id: str) -> FileRecord | None:
        item = await self._db.get(self._t.files, {"file_id": s(file_id)})
        return file_from(item) if item else None

    async def expired_files(self, before: int, limit: int = 500) -> list[FileRecord]:
        # The index is eventually consistent: a grant just sent may still be listed; deleting it is a
        # conditional delete of pending records only, so that is harmless.
        items = await self._db.query(
            limit=limit,
            TableName=self._t.files,
            IndexName=FILES_PENDING,
            KeyConditionExpression="#p = :p AND #e < :before",
            ExpressionAttributeNames={"#p": PENDING_ATTR, "#e": "expires_at"},
            ExpressionAttributeValues={":p": s(PENDING_VALUE), ":before": n(before)},
            ScanIndexForward=True,
        )
        records = [file_from(i) for i in items]
        return [r for r in records if r.status == "pending"]

    async def delete_pending_files(self, file_ids: Collection[str]) -> None:
        gate = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def delete(file_id: str) -> None:
            async with gate:
                with contextlib.suppress(ConditionFailed):
                    await self._db.call(
                        "delete_item",
                        TableName=self._t.files,
                        Key={"file_id": s(file_id)},
                        ConditionExpression="#st = :pending",
                        ExpressionAttributeNames={"#st": "status"},
                        ExpressionAttributeValues={":pending": s("pending")},
                    )

        await asyncio.gather(*(delete(i) for i in dict.fromkeys(file_ids)))
