"""Local accounts: register, login, logout, and the caller's profile with tier limits and usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from ..deps import SESSION_COOKIE, CurrentAuth, ServicesDep
from ..frames import limits_json, user_json
from ..security import is_https

router = APIRouter(prefix="/api")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str
    password: str


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    # A browser-session cookie: the server enforces the (sliding) expiry.
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=is_https(request.scope), path="/")


@router.post("/auth/register", status_code=201)
async def register(body: Credentials, request: Request, services: ServicesDep) -> dict[str, Any]:
    ip = request.client.host if request.client else "unknown"
    user = await services.accounts.register(body.username, body.password, ip)
    return {"user": user_json(user)}


@router.post("/auth/login")
async def login(body: Credentials, request: Request, response: Response, services: ServicesDep) -> dict[str, Any]:
    ip = request.client.host if request.client else "unknown"
    user, token, _ = await services.accounts.login(body.username, body.password, ip)
    set_session_cookie(request, response, token)
    return {"user": user_json(user), "token": token}


@router.post("/auth/logout", status_code=204)
async def logout(auth: CurrentAuth, request: Request, services: ServicesDep) -> Response:
    await services.accounts.logout(auth.session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request.scope))
    return response


@router.get("/me")
async def me(auth: CurrentAuth, services: ServicesDep) -> dict[str, Any]:
    limits, usage = await services.limits_and_usage(auth.user)
    return {"user": user_json(auth.user), **limits_json(limits, usage)}
