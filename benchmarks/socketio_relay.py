"""The multi-node baseline: python-socketio's AsyncServer (ASGI, on uvicorn) with its Redis manager.

Minimal chat semantics, comparable to ``relay.py``: a client connects with ``auth={"key": K}`` (or
``?key=K`` in the query) and joins the room named K; a ``send`` event ``{"to", "content"}`` is emitted
as a ``message`` event ``{"content"}`` to room ``to``. No auth, no storage, no acks. With
``socketio.AsyncRedisManager`` an emit is delivered to this process's members at once and published
on Redis for the others, so when two partners sit on different processes every message crosses Redis,
as in Stratochat's two-node setup. ``GET /healthz`` answers 200. One process per node:

    python benchmarks/socketio_relay.py --port 8200 --redis redis://127.0.0.1:6379/0
    python benchmarks/socketio_relay.py --port 8201 --redis redis://127.0.0.1:6379/0

``stratochat bench --target socketio`` starts and drives it.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any
from urllib.parse import parse_qs

import socketio  # type: ignore[import-untyped]
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse


def build(redis_url: str) -> Any:
    manager = socketio.AsyncRedisManager(redis_url)
    # Defaults otherwise (stdlib json, 25 s pings), as a python-socketio deployment starts out.
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        key = auth.get("key") if isinstance(auth, dict) else None
        if key is None:
            key = (parse_qs(environ.get("QUERY_STRING", "")).get("key") or [None])[0]
        if not key:
            return False  # refused: the client gets a connect_error
        await sio.enter_room(sid, str(key))
        return True

    async def send(sid: str, data: Any) -> None:
        if isinstance(data, dict) and data.get("to") is not None:
            await sio.emit("message", {"content": data.get("content")}, to=str(data["to"]))

    sio.on("connect", connect)
    sio.on("send", send)

    def subscribe() -> None:
        # python-socketio subscribes to Redis on its first connection, in a background task; a message
        # published by another process before that is lost. Subscribe at startup instead, and answer
        # /healthz only once the subscription is on, so a bench never sends into the gap.
        sio.manager_initialized = True
        manager.initialize()

    health = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @health.get("/healthz")
    async def healthz() -> JSONResponse:
        pubsub = getattr(manager, "pubsub", None)
        ok = pubsub is not None and pubsub.subscribed
        return JSONResponse({"ok": ok}, status_code=200 if ok else 503)

    return socketio.ASGIApp(sio, other_asgi_app=health, on_startup=subscribe)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis all the processes share")
    p.add_argument("--ws", default="websockets-sansio", help="uvicorn WebSocket implementation")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(
            build(args.redis),
            host=args.host,
            port=args.port,
            ws=args.ws,
            http="httptools",
            loop="uvloop",
            lifespan="on",  # subscribes to Redis at startup (see build)
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            server_header=False,
        )


if __name__ == "__main__":
    main()
