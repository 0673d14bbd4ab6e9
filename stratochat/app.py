"""The composition root: Settings -> adapters -> core services -> the FastAPI app and its lifespan.

Backends are imported inside their branch, so an embedded install never imports redis, boto or
authlib. Every resource is entered in one AsyncExitStack: closed in reverse order, and only if its
start finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

# The embedded file store's URL paths (stdlib only: the default install serves its URLs itself).
from .adapters.blobs.disk import FORM_OVERHEAD, UPLOAD_PATH
from .core.accounts import AccountService
from .core.chats import ChatService
from .core.clock import SystemClock
from .core.files import FilePurger, FileService, parse_content_types
from .core.hub import Hub
from .core.limits import FailureWindow, TierPolicy, TokenBuckets
from .core.messages import MessageService
from .core.ports import BlobStore, Broker, Clock, IdentityProvider, PresenceStore, Store
from .core.presence import PresenceService
from .core.services import Services
from .fdwatch import FdWatch
from .loopwatch import LoopWatch
from .settings import Settings
from .web import errors
from .web.access import AccessLog
from .web.frames import encode_event
from .web.gateway import CLOSINGS_PER_TURN, HANDSHAKES_AT_ONCE, SessionSweeper, serve_socket
from .web.pacing import TurnGate
from .web.routes import auth, chats, client_config, files, health, metrics, pages
from .web.security import OriginPolicy, SecurityHeaders
from .web.shutdown import Drain

log = logging.getLogger("stratochat.app")


def build_store(settings: Settings, clock: Clock) -> Store:
    if settings.store == "dynamodb":
        # Region, credentials and endpoint come from the AWS SDK's own variables (AWS_ENDPOINT_URL...).
        from .adapters.store.dynamodb import DynamoStore

        return DynamoStore(settings.table_prefix, clock, region=settings.aws_default_region)
    from .adapters.store.sqlite import SqliteStore

    return SqliteStore(settings.database_path, clock)


def build_broker(settings: Settings) -> Broker:
    if settings.redis_cluster_endpoint:
        from .adapters.broker.redis import RedisBroker

        return RedisBroker(settings.redis_cluster_endpoint)
    from .adapters.broker.memory import MemoryBroker

    return MemoryBroker()


def build_presence(settings: Settings, clock: Clock) -> PresenceStore:
    if settings.redis_cluster_endpoint:
        from .adapters.presence.redis import RedisPresence

        return RedisPresence(settings.redis_cluster_endpoint, clock, ttl_s=settings.presence_ttl)
    from .adapters.presence.memory import MemoryPresence

    return MemoryPresence()


def build_identity_provider(settings: Settings, clock: Clock) -> IdentityProvider | None:
    """The OpenID Connect provider (Cognito is one), when COGNITO_* or OIDC_* configure one."""
    config = settings.identity_provider()
    if config is None:
        return None
    from .adapters.identity.oidc import OidcIdentityProvider

    return OidcIdentityProvider(config, clock=clock)


def build_blobs(settings: Settings, clock: Clock) -> BlobStore:
    """S3 when S3_BUCKET_NAME is set (endpoint and credentials from the AWS SDK's own variables, such
    as AWS_ENDPOINT_URL_S3), else files under the data directory, served by this app."""
    if settings.s3_bucket_name:
        from .adapters.blobs.s3 import S3BlobStore

        return S3BlobStore(settings.s3_bucket_name, region=settings.aws_default_region, clock=clock)
    from .adapters.blobs.disk import DiskBlobStore

    return DiskBlobStore(settings.data_dir / "files", secret_key(settings), clock)


def tier_policy(settings: Settings) -> TierPolicy:
    return TierPolicy(
        free_daily_messages=settings.free_daily_messages,
        free_storage_bytes=settings.free_storage_bytes,
        free_max_file_bytes=settings.free_max_file_bytes,
        premium_daily_messages=settings.premium_daily_messages,
        premium_storage_bytes=settings.premium_storage_bytes,
        premium_max_file_bytes=settings.premium_max_file_bytes,
    )


async def _nothing() -> None:
    return None


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


def build_services(
    settings: Settings, store: Store, broker: Broker, presence: PresenceStore, clock: Clock, *, blobs: BlobStore
) -> Services:
    node_id = settings.node_id or uuid.uuid4().hex[:12]
    accounts = AccountService(
        store,
        store,
        clock,
        session_ttl_s=settings.session_ttl,
        user_failures=FailureWindow(clock, settings.login_max_failures, settings.login_failure_window),
        ip_failures=FailureWindow(clock, settings.login_ip_max_failures, settings.login_failure_window),
        signups=TokenBuckets(clock, settings.signup_rate / 60, settings.signup_burst),
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
    tiers = tier_policy(settings)
    file_service = FileService(
        store,
        store,
        blobs,
        chat_service,
        clock,
        tiers=tiers,
        url_ttl_s=settings.file_url_ttl,
        pending_ttl_s=settings.file_pending_ttl,
        content_types=parse_content_types(settings.file_content_types),
        grants=TokenBuckets(clock, settings.burst_rate, settings.burst_size),
    )
    messages = MessageService(
        store,
        chat_service,
        hub,
        clock,
        max_chars=settings.max_message_chars,
        tiers=tiers,
        burst=TokenBuckets(clock, settings.burst_rate, settings.burst_size),
        files=file_service,
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
        files=file_service,
        # The embedded file store lives beside the SQLite database, which "store" already checks.
        health={"store": store, "broker": broker, **({"files": blobs} if settings.s3_bucket_name else {})},
    )


# HTTP requests started per loop turn; the rest start in later turns. In a reconnect storm thousands of
# clients fetch their inbox and history at once, and a request runs on the loop for 0.3-0.7 ms: dozens
# started in one turn held every open socket's frames behind them. Health checks are not kept waiting.
REQUESTS_PER_TURN = 8
UNPACED_PATHS = frozenset({"/healthz", "/readyz"})


class StratochatApp(FastAPI):
    """FastAPI, with ``/ws`` handed straight to the gateway (see ``serve_socket``), and HTTP requests
    started a few per loop turn (``REQUESTS_PER_TURN``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == scope.get("root_path", "") + "/ws":
            scope["app"] = self
            await serve_socket(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].removeprefix(scope.get("root_path", "")) not in UNPACED_PATHS:
            gate: TurnGate | None = scope.get("state", {}).get("requests")
            if gate is not None:
                await gate.wait()
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()
    # Where signed file URLs point when it is not this app (an S3 bucket): the browser's CSP allows it.
    storage_origins: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            store = build_store(settings, clock)
            await store.start()
            stack.push_async_callback(store.close)
            broker = build_broker(settings)
            presence = build_presence(settings, clock)
            # Only the Redis presence holds connections; the port has no close of its own.
            stack.push_async_callback(getattr(presence, "close", _nothing))
            blobs = build_blobs(settings, clock)
            await blobs.start()
            stack.push_async_callback(blobs.close)
            storage_origins[:] = blobs.origins()
            services = build_services(settings, store, broker, presence, clock, blobs=blobs)
            await services.hub.start()
            stack.push_async_callback(broker.close)
            stack.push_async_callback(services.hub.close)
            presence_service = PresenceService(presence, store, services.hub, heartbeat_s=settings.presence_ttl / 3)
            await presence_service.start()
            stack.push_async_callback(presence_service.close)
            sweeper = SessionSweeper(services, interval_s=min(1.0, settings.session_ttl / 4))
            await sweeper.start()
            stack.push_async_callback(sweeper.close)
            purger = FilePurger(services.files, interval_s=settings.file_purge_interval)
            await purger.start()
            stack.push_async_callback(purger.close)
            fdwatch = FdWatch()
            await fdwatch.start()
            stack.push_async_callback(fdwatch.close)
            loopwatch = LoopWatch()
            await loopwatch.start()
            stack.push_async_callback(loopwatch.close)
            oidc: object | None = None  # identity provider login, when configured
            provider = build_identity_provider(settings, clock)
            if provider is not None:
                from .core.identity import IdentityService
                from .web.routes.oidc import LoginStateCodec, OidcLogin

                identity = IdentityService(
                    provider, store, services.accounts, clock, premium_group=settings.premium_group
                )
                await identity.start()
                stack.push_async_callback(identity.close)
                oidc = OidcLogin(identity, LoginStateCodec(secret_key(settings)))
            # SIGTERM drains the sockets before uvicorn shuts down; /readyz fails meanwhile.
            drain = Drain(services.hub, settings.drain_seconds)
            drain.install()
            stack.push_async_callback(drain.close)
            log.info("stratochat node %s ready", services.hub.node_id, extra={"store": settings.store})
            yield {
                "services": services,
                "settings": settings,
                "origins": OriginPolicy(settings.extra_origins),
                "handshakes": asyncio.Semaphore(HANDSHAKES_AT_ONCE),
                "closings": TurnGate(CLOSINGS_PER_TURN),
                "requests": TurnGate(REQUESTS_PER_TURN),
                "oidc": oidc,
                "blobs": blobs,
                "loopwatch": loopwatch,
            }
            log.info("stratochat node %s stopping", services.hub.node_id)
            services.hub.close_all(1001, "server shutting down")

    app = StratochatApp(
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
    app.include_router(metrics.router)
    app.include_router(client_config.router)
    app.include_router(files.router)
    app.include_router(files.blob_router)
    if settings.identity_provider() is not None:
        from .web.routes import oidc as oidc_routes

        app.include_router(oidc_routes.router)  # /login, /authorize, /logout
    app.include_router(pages.router)
    # The embedded file store's upload URL takes up to the largest tier's file; every other route 1 MiB.
    body_limits = {} if settings.s3_bucket_name else {UPLOAD_PATH: _largest_file(settings) + FORM_OVERHEAD}
    app.add_middleware(SecurityHeaders, body_limits=body_limits, storage_origins=lambda: storage_origins)
    app.add_middleware(AccessLog)
    return app


def _largest_file(settings: Settings) -> int:
    return max(settings.free_max_file_bytes, settings.premium_max_file_bytes)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    from .logs import configure

    settings = Settings()
    configure(settings.log_level)
    if settings.workers > 1 and settings.node_id:
        # Worker processes are nodes of their own: a shared id would make each drop the others'
        # broker payloads as its own echoes, and clear the others' presence entries.
        settings = settings.model_copy(update={"node_id": f"{settings.node_id}-{os.getpid()}"})
    app = create_app(settings)
    from .cli import tune_gc

    tune_gc()
    return app
