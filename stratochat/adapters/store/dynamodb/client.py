"""One aiobotocore DynamoDB client for the store's lifetime, and the few request shapes the store uses.

The client is created once in ``start()`` (before the node serves) and reused by every call; the SDK
resolves region, credentials and endpoint itself (``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_DYNAMODB``, the credential chain). Every call is a coroutine: nothing blocks the loop.

Errors leave as domain errors: a failed condition as ``ConditionFailed``, a cancelled transaction as
``TransactionCanceled`` (both handled by the callers), an item over DynamoDB's 400 KB as ``TooLarge``,
anything else (throttling after the SDK's retries, an unreachable endpoint, a missing table) as
``Unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Sequence
from typing import Any

import aioboto3  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from ....core.errors import TooLarge, Unavailable

log = logging.getLogger("stratochat.store.dynamodb")

Item = dict[str, dict[str, Any]]
Key = dict[str, dict[str, Any]]

# BatchGetItem takes at most 100 keys, BatchWriteItem 25 requests (DynamoDB limits).
BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
# Unprocessed batch keys (throttling) are retried this many times with jittered backoff before giving up.
UNPROCESSED_RETRIES = 8


class ConditionFailed(Exception):
    """A single-item write's condition was false; ``item`` is the item as it was (when asked for)."""

    def __init__(self, item: Item | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


class TransactionCanceled(Exception):
    """A TransactWriteItems was cancelled: one reason per item, in request order."""

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__(", ".join(r.get("Code", "?") for r in reasons))
        self.reasons = reasons

    def code(self, index: int) -> str:
        return str(self.reasons[index].get("Code", "None")) if index < len(self.reasons) else "None"

    def failed(self, index: int) -> bool:
        return self.code(index) == "ConditionalCheckFailed"

    def item(self, index: int) -> Item | None:
        if index >= len(self.reasons):
            return None
        item: Item | None = self.reasons[index].get("Item")
        return item


async def backoff(attempt: int, base: float = 0.01, cap: float = 0.5) -> None:
    """Full-jitter exponential backoff (attempt 0 waits at most ``base``)."""
    await asyncio.sleep(random.uniform(0, min(cap, base * 2**attempt)))


class DynamoClient:
    def __init__(self, region: str | None = None, *, max_connections: int = 64) -> None:
        self._region = region
        self._max_connections = max_connections
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        session = aioboto3.Session()
        config = AioConfig(
            # The SDK's standard retry mode; AWS_MAX_ATTEMPTS (default 3) still applies.
            retries={"mode": "standard"},
            connect_timeout=3,
            read_timeout=10,
            max_pool_connections=self._max_connections,
        )
        try:
            self._client = await self._stack.enter_async_context(
                session.client("dynamodb", region_name=self._region, config=config)
            )
        except BotoCoreError as exc:
            await self._stack.aclose()
            raise RuntimeError(f"cannot create the DynamoDB client: {exc}") from exc

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        client = self._client
        if client is None:
            raise Unavailable("store is not open")
        try:
            result: dict[str, Any] = await getattr(client, operation)(**params)
            return result
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(exc.response.get("Item")) from None
            if code == "TransactionCanceledException":
                raise TransactionCanceled(list(exc.response.get("CancellationReasons") or [])) from None
            message = str(exc.response.get("Error", {}).get("Message", ""))
            if code == "ValidationException" and "size" in message.lower():
                # DynamoDB items hold at most 400 KB; only a huge message with a raised content limit gets here.
                raise TooLarge("too large for the database to store") from None
            log.error("DynamoDB %s failed: %s %s", operation, code, message)
            raise Unavailable("the database did not accept the request; try again") from exc
        except BotoCoreError as exc:
            log.error("DynamoDB %s failed: %s", operation, exc)
            raise Unavailable("the database is unreachable; try again") from exc

    # request shapes ------------------------------------------------------------------------------
    async def get(
        self, table: str, key: Key, *, projection: str | None = None, names: dict[str, str] | None = None
    ) -> Item | None:
        """A strongly consistent GetItem (reads right after writes must see them)."""
        params: dict[str, Any] = {"TableName": table, "Key": key, "ConsistentRead": True}
        if projection:
            params["ProjectionExpression"] = projection
        if names:
            params["ExpressionAttributeNames"] = names
        item: Item | None = (await self.call("get_item", **params)).get("Item")
        return item

    async def batch_get(
        self, table: str, keys: Sequence[Key], *, projection: str | None = None, names: dict[str, str] | None = None
    ) -> list[Item]:
        """Strongly consistent BatchGetItem of any number of keys (chunks of 100 run concurrently);
        missing items are left out, order is not kept."""
        chunks = [keys[i : i + BATCH_GET_MAX] for i in range(0, len(keys), BATCH_GET_MAX)]
        results = await asyncio.gather(*(self._batch_get_chunk(table, c, projection, names) for c in chunks))
        return [item for chunk in results for item in chunk]

    async def _batch_get_chunk(
        self, table: str, keys: Sequence[Key], projection: str | None, names: dict[str, str] | None
    ) -> list[Item]:
        request: dict[str, Any] = {"Keys": list(keys), "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = names
        out: list[Item] = []
        for attempt in range(UNPROCESSED_RETRIES + 1):
            response = await self.call("batch_get_item", RequestItems={table: request})
            out.extend(response.get("Responses", {}).get(table, []))
            left = response.get("UnprocessedKeys", {}).get(table)
            if not left or not left.get("Keys"):
                return out
            request = left
            await backoff(attempt, base=0.05)
        raise Unavailable("the database is throttling reads; try again")

    async def batch_put(self, table: str, items: Sequence[Item]) -> None:
        """BatchWriteItem puts of any number of items (not atomic; unprocessed ones are retried)."""
        for i in range(0, len(items), BATCH_WRITE_MAX):
            requests: list[dict[str, Any]] = [{"PutRequest": {"Item": it}} for it in items[i : i + BATCH_WRITE_MAX]]
            for attempt in range(UNPROCESSED_RETRIES + 1):
                response = await self.call("batch_write_item", RequestItems={table: requests})
                requests = response.get("UnprocessedItems", {}).get(table) or []
                if not requests:
                    break
                await backoff(attempt, base=0.05)
            else:
                raise Unavailable("the database is throttling writes; try again")

    async def query(self, *, limit: int | None = None, **params: Any) -> list[Item]:
        """A strongly consistent Query (unless on an index), following pages until ``limit`` items (or all)."""
        params.setdefault("ConsistentRead", "IndexName" not in params)
        out: list[Item] = []
        while True:
            if limit is not None:
                params["Limit"] = limit - len(out)
            response = await self.call("query", **params)
            out.extend(response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last or (limit is not None and len(out) >= limit):
                return out
            params["ExclusiveStartKey"] = last

    async def transact(self, items: list[dict[str, Any]], token: str | None = None) -> None:
        """TransactWriteItems, retried (bounded, with backoff) while it is cancelled only because of
        contention or throttling. ``token`` seeds ClientRequestToken, which makes the SDK's own retries
        of a request whose answer was lost succeed instead of failing their conditions against their own
        writes; each of our retries gets a token of its own."""
        for attempt in range(TRANSIENT_RETRIES + 1):
            params: dict[str, Any] = {"TransactItems": items}
            if token:
                params["ClientRequestToken"] = request_token(token, str(attempt))
            try:
                await self.call("transact_write_items", **params)
                return
            except TransactionCanceled as exc:
                codes = {r.get("Code", "None") for r in exc.reasons}
                if attempt == TRANSIENT_RETRIES or not codes & TRANSIENT_CODES or codes - TRANSIENT_CODES - {"None"}:
                    raise
            await backoff(attempt)


# Cancellation reasons that say "try again" rather than "your condition is false".
TRANSIENT_CODES = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
TRANSIENT_RETRIES = 6


def request_token(*parts: str) -> str:
    """A ClientRequestToken (at most 36 characters) derived from what identifies the write."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:36]
