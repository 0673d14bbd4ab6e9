"""The composition root: Settings -> adapters -> core services -> the FastAPI app and its lifespan.

Backends are imported inside their branch, so an embedded install never imports redis, boto or
authlib. Every resource is entered in one AsyncExitStack: closed in reverse order, and only if its
start finished.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .core.accounts import AccountService
from .core.chats import ChatService
from .core.clock import SystemClock
from .core.hub import Hub
from .core.limits import FailureWindow, TierPolicy, TokenBuckets
from .core.messages import MessageService
from .core.ports import Broker, Clock, PresenceStore, Store
from .core.presence import PresenceService
from .core.services import Services
from .settings import Settings
from .web import errors
from .web.access import AccessLog
from .web.frames import encode_event
from .web.gateway import SessionSweeper
from .web.gateway import router as gateway_router
from .web.routes import auth, chats, health, pages
from .web.security import OriginPolicy, SecurityHeaders

log = logging.getLogger("stratochat.app")


def build_store(settings: Settings, clock: Clock) -> Store:
    if settings.store == "dynamodb":
        raise SystemExit("STRATOCHAT_STORE=dynamodb is not available in this build yet")
    from .adapters.store.sqlite import SqliteStore

    return SqliteStore(settings.database_path, clock)


def build_broker(settings: Settings) -> Broker:
    if settings.redis_cluster_endpoint:
        raise SystemExit("REDIS_CLUSTER_ENDPOINT is set, but the Redis broker is not available in this build yet")
    from .adapters.broker.memory import MemoryBroker

    return MemoryBroker()


def build_presence(settings: Settings) -> PresenceStore:
    from .adapters.presence.memory import MemoryPresence

    return MemoryPresence()


def secret_key(settings: Settings) -> str:
    """SECRET_KEY, or on embedded defaults one generated once and kept in the data directory."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError), open(path, "x", opener=lambda p, f: _private_open(p, f)) as fh:
        fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _private_open(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)


def build_services(settings: Settings, store: Store, broker: Broker, presence: PresenceStore, clock: Clock) -> Services:
    node_id = settings.node_id or uuid.uuid4().hex[:12]
    accounts = AccountService(
        store,
        store,
        clock,
        session_ttl_s=settings.session_ttl,
        user_failures=FailureWindow(clock, settings.login_max_failures, settings.login_failure_window),
        ip_failures=FailureWindow(clock, settings.login_ip_max_failures, settings.login_failure_window),
    )

    async def fetch_after(chat_id: str, after: int, limit: int) -> list[Any]:
        page, _ = await store.list_messages(chat_id, after=after, limit=limit)
        return page

    chat_service: ChatService | None = None

    async def fetch_seqs(user_id: str) -> dict[str, int]:
        assert chat_service is not None
        return await chat_service.chat_positions(user_id)

    hub = Hub(broker, encode_event, node_id, fetch_after, fetch_seqs)
    chat_service = ChatService(store, store, presence, hub, clock, max_group_members=settings.max_group_members)
    tiers = TierPolicy(
        free_daily_messages=settings.free_daily_messages,
        free_storage_bytes=settings.free_storage_bytes,
        free_max_file_bytes=settings.free_max_file_bytes,
        premium_daily_messages=settings.premium_daily_messages,
        premium_storage_bytes=settings.premium_storage_bytes,
        premium_max_file_bytes=settings.premium_max_file_bytes,
    )
    messages = MessageService(
        store,
        chat_service,
        hub,
        clock,
        max_chars=settings.max_message_chars,
        tiers=tiers,
        burst=TokenBuckets(clock, settings.burst_rate, settings.burst_size),
    )
    accounts.on_logout(lambda s: hub.revoke_session(s.user_id, s.session_id))
    return Services(
        accounts=accounts,
        chats=chat_service,
        messages=messages,
        hub=hub,
        usage=store,
        tiers=tiers,
        clock=clock,
        health={"store": store, "broker": broker},
    )


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            store = build_store(settings, clock)
            await store.start()
            stack.push_async_callback(store.close)
            broker = build_broker(settings)
            presence = build_presence(settings)
            services = build_services(settings, store, broker, presence, clock)
            await services.hub.start()
            stack.push_async_callback(broker.close)
            stack.push_async_callback(services.hub.close)
            presence_service = PresenceService(presence, store, services.hub)
            await presence_service.start()
            stack.push_async_callback(presence_service.close)
            sweeper = SessionSweeper(services, interval_s=min(1.0, settings.session_ttl / 4))
            await sweeper.start()
            stack.push_async_callback(sweeper.close)
            log.info("stratochat node %s ready", services.hub.node_id, extra={"store": settings.store})
            yield {"services": services, "settings": settings, "origins": OriginPolicy(settings.extra_origins)}
            log.info("stratochat node %s stopping", services.hub.node_id)
            services.hub.close_all(1001, "server shutting down")

    app = FastAPI(
        title="Stratochat",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    errors.install(app)
    app.include_router(auth.router)
    app.include_router(chats.router)
    app.include_router(health.router)
    app.include_router(gateway_router)
    app.include_router(pages.router)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    from .logs import configure

    settings = Settings()
    configure(settings.log_level)
    return create_app(settings)
