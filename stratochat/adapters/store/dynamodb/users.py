"""Users: WebSocketUsers items, made unique by username (and external id) through UniqueKeys claims.

A user and its claims are written in one transaction whose claims must not exist yet, so two callers
racing for one name cannot both win. Lookups by name read the claim (strongly consistent), then the user,
so a user is found by name right after it was created.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ....core.errors import Conflict, NotFound
from ....core.models import User
from .client import ConditionFailed, DynamoClient, Item, TransactionCanceled
from .items import external_claim, get_s, s, user_from, user_item, username_claim
from .schema import DIRECTORY_ATTR, DIRECTORY_VALUE, USERS_BY_USERNAME, TableNames

CLAIM_NEW = {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": "claim"}}


def claim_put(table: str, claim: str, **attrs: str) -> dict[str, Any]:
    item: Item = {"claim": s(claim), **{k: s(v) for k, v in attrs.items()}}
    return {"Put": {"TableName": table, "Item": item, **CLAIM_NEW}}


class DynamoUsers:
    def __init__(self, client: DynamoClient, tables: TableNames) -> None:
        self._db = client
        self._t = tables

    async def create_user(self, user: User) -> None:
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._t.users,
                    "Item": user_item(user),
                    "ConditionExpression": "attribute_not_exists(#id)",
                    "ExpressionAttributeNames": {"#id": "user_id"},
                }
            },
            claim_put(self._t.unique, username_claim(user.username), user_id=user.user_id),
        ]
        if user.external_id is not None:
            items.append(claim_put(self._t.unique, external_claim(user.external_id), user_id=user.user_id))
        try:
            await self._db.transact(items, token=f"user|{user.user_id}")
        except TransactionCanceled as exc:
            if exc.failed(1):
                raise Conflict(f"username '{user.username}' is taken") from None
            if exc.failed(2):
                raise Conflict("that identity is already linked to another account") from None
            if exc.failed(0):
                raise Conflict("a user with that id exists") from None
            raise

    async def get_user(self, user_id: str) -> User | None:
        item = await self._db.get(self._t.users, {"user_id": s(user_id)})
        return user_from(item) if item else None

    async def _by_claim(self, claim: str) -> User | None:
        found = await self._db.get(self._t.unique, {"claim": s(claim)})
        return await self.get_user(get_s(found, "user_id")) if found else None

    async def get_user_by_username(self, username: str) -> User | None:
        return await self._by_claim(username_claim(username))

    async def get_user_by_external_id(self, external_id: str) -> User | None:
        return await self._by_claim(external_claim(external_id))

    async def get_users(self, user_ids: Collection[str]) -> dict[str, User]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        items = await self._db.batch_get(self._t.users, [{"user_id": s(i)} for i in ids])
        users = (user_from(it) for it in items)
        return {u.user_id: u for u in users}

    async def set_premium(self, user_id: str, is_premium: bool) -> None:
        try:
            await self._db.call(
                "update_item",
                TableName=self._t.users,
                Key={"user_id": s(user_id)},
                UpdateExpression="SET #p = :p",
                ConditionExpression="attribute_exists(#id)",
                ExpressionAttributeNames={"#p": "is_premium", "#id": "user_id"},
                ExpressionAttributeValues={":p": {"BOOL": is_premium}},
            )
        except ConditionFailed:
            raise NotFound("no such user") from None

    async def list_users(self, limit: int = 100, after: str | None = None) -> list[User]:
        # The index is eventually consistent and KEYS_ONLY: it gives the order, the table the users.
        condition = "#d = :d AND #u > :after" if after else "#d = :d"
        values = {":d": s(DIRECTORY_VALUE), **({":after": s(after)} if after else {})}
        keys = await self._db.query(
            limit=limit,
            TableName=self._t.users,
            IndexName=USERS_BY_USERNAME,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#d": DIRECTORY_ATTR, **({"#u": "username"} if after else {})},
            ExpressionAttributeValues=values,
        )
        users = await self.get_users([get_s(k, "user_id") for k in keys])
        return sorted(users.values(), key=lambda u: u.username)
