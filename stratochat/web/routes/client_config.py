"""``GET /api/config``: what the browser client needs before anyone signs in (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...settings import Settings

router = APIRouter(prefix="/api")


@router.get("/config")
async def client_config(request: Request) -> dict[str, Any]:
    settings: Settings = request.state.settings
    # providers: [{"id", "name", "login_url"}], one per configured identity provider (filled by the OIDC login).
    providers: list[dict[str, str]] = []
    if (idp := settings.identity_provider()) is not None:
        providers.append({"id": "oidc", "name": idp.name, "login_url": "/login"})
    return {"providers": providers, "max_message_chars": settings.max_message_chars, "features": {"files": True}}
