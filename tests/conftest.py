from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratochat.settings import Settings
from tests.client import Api
from tests.services.server import ThreadServer

# Fixture modules for real services (redis-server, moto, the OIDC provider, nginx, ...): one line each.
pytest_plugins: list[str] = [
    "tests.services.moto",
    "tests.services.redis",
    "tests.services.nginx",
    "tests.services.cluster",  # several nodes + Redis + nginx (tests/e2e/test_cluster.py)
    "tests.services.oidc",
    "tests.services.localstack",  # S3 that enforces POST policies (BlobStore contract)
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", burst_rate=0)  # type: ignore[call-arg]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ThreadServer]]:
    servers: list[ThreadServer] = []

    def make(**overrides: Any) -> ThreadServer:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("burst_rate", 0)
        settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
        server = ThreadServer(settings).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server: Callable[..., ThreadServer]) -> ThreadServer:
    return make_server()


@pytest.fixture
async def api_factory(server: ThreadServer) -> AsyncIterator[Callable[[], Api]]:
    clients: list[Api] = []

    def make() -> Api:
        c = Api(server.url)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def alice(api_factory: Callable[[], Api]) -> Api:
    return await api_factory().signup()


@pytest.fixture
async def bob(api_factory: Callable[[], Api]) -> Api:
    return await api_factory().signup()
