"""The Broker contract (tests/contracts/broker.py) against every adapter: MemoryBroker on one MemoryBus,
RedisBroker on a single Redis, RedisBroker on a three-primary Redis Cluster (sharded pub/sub)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from stratochat.adapters.broker.memory import MemoryBroker, MemoryBus
from stratochat.core.ports import Broker
from tests.contracts.broker import BrokerContract, BrokerFactory, Recorder


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """A factory of started brokers sharing one backend and a namespace private to the test."""
    made: list[Broker] = []
    bus = MemoryBus()
    url = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    elif request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def make() -> tuple[Broker, Recorder]:
        broker: Broker
        if request.param == "memory":
            broker = MemoryBroker(bus)
        else:
            from stratochat.adapters.broker.redis import RedisBroker

            broker = RedisBroker(url, prefix=prefix)
        inbox = Recorder()
        await broker.start(inbox)
        made.append(broker)
        return broker, inbox

    yield make
    for b in made:
        await b.close()


class TestBrokerContract(BrokerContract):
    pass
