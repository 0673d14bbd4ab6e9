"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import JSONResponse

from ..deps import ServicesDep

router = APIRouter()

READY_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """200 only while every configured backend answers within the timeout and the node is not
    shutting down (a draining node must get no new connections)."""

    async def check(name: str) -> tuple[str, str]:
        try:
            await asyncio.wait_for(services.health[name].ping(), READY_TIMEOUT_S)
            return name, "ok"
        except Exception as exc:
            return name, f"down: {type(exc).__name__}"

    results = dict(await asyncio.gather(*(check(n) for n in services.health)))
    ok = all(v == "ok" for v in results.values())
    status = "draining" if services.hub.draining else "ok" if ok else "unavailable"
    return JSONResponse({"status": status, "backends": results}, status_code=200 if status == "ok" else 503)
