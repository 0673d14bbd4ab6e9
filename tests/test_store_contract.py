"""The Store contract, run once per adapter: SQLite on a temporary file, DynamoDB on moto over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from stratochat.adapters.store.dynamodb.schema import TASK_ACTIONS
from stratochat.core.clock import FakeClock
from stratochat.core.ports import Store
from tests.contracts.store import Backend, StoreContract


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "dynamodb"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    opened: list[Store] = []
    sent: set[str] = set()
    if request.param == "sqlite":
        from stratochat.adapters.store.sqlite import SqliteStore

        def make() -> Store:
            return SqliteStore(tmp_path / "contract.db", clock)
    else:
        from stratochat.adapters.aws_provision import provision_tables
        from stratochat.adapters.store.dynamodb import DynamoStore
        from stratochat.adapters.store.dynamodb.client import DynamoClient

        endpoint = request.getfixturevalue("moto_serial_endpoint")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        prefix = request.getfixturevalue("unique_prefix")
        await provision_tables(prefix)
        monkeypatch.setattr(DynamoClient, "call", recording(DynamoClient.call, sent))

        def make() -> Store:
            return DynamoStore(prefix, clock)

    async def open_store() -> Store:
        store = make()
        await store.start()
        opened.append(store)
        return store

    try:
        yield Backend(request.param, open_store)
    finally:
        for store in reversed(opened):
            await store.close()
    # The IAM policy documented for the running task (schema.TASK_ACTIONS) covers all the store sent.
    assert sent <= set(TASK_ACTIONS), sent - set(TASK_ACTIONS)


def recording(call: Callable[..., Any], sent: set[str]) -> Callable[..., Any]:
    """DynamoClient.call, noting the IAM action of each request (of each item, for a transaction)."""

    async def record(self: Any, operation: str, **params: Any) -> Any:
        if operation == "transact_write_items":
            kinds = {kind for item in params["TransactItems"] for kind in item}
            sent.update(f"dynamodb:{'ConditionCheckItem' if k == 'ConditionCheck' else k + 'Item'}" for k in kinds)
        else:
            sent.add("dynamodb:" + "".join(part.title() for part in operation.split("_")))
        return await call(self, operation, **params)

    return record


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


class TestStoreContract(StoreContract):
    pass
