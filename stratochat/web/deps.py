"""FastAPI dependencies: the node's services (lifespan state) and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ..core.errors import Forbidden
from ..core.models import Session, User
from ..core.services import Services
from .security import OriginPolicy

SESSION_COOKIE = "session_id"


def get_services(conn: HTTPConnection) -> Services:
    services: Services = conn.state.services
    return services


def get_origins(conn: HTTPConnection) -> OriginPolicy:
    origins: OriginPolicy = conn.state.origins
    return origins


def token_of(conn: HTTPConnection) -> tuple[str | None, bool]:
    """The session token and whether it came from the cookie. A bearer header wins over the cookie."""
    auth = conn.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = conn.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


@dataclass(frozen=True, slots=True)
class Auth:
    user: User
    session: Session


async def current_auth(request: Request) -> Auth:
    services = get_services(request)
    token, from_cookie = token_of(request)
    user, session = await services.accounts.authenticate(token)
    if from_cookie and request.method not in ("GET", "HEAD", "OPTIONS"):
        # Cookies ride along on cross-site requests; the browser's Origin says where one came from.
        origin = request.headers.get("origin")
        if origin and not get_origins(request).allowed(origin, request.headers.get("host")):
            raise Forbidden("cross-origin request refused")
    return Auth(user, session)


async def _services_dependency(conn: HTTPConnection) -> Services:
    # async, so FastAPI resolves it on the event loop instead of sending each request to a thread.
    return get_services(conn)


ServicesDep = Annotated[Services, Depends(_services_dependency)]
CurrentAuth = Annotated[Auth, Depends(current_auth)]
