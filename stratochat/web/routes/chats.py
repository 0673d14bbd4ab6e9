"""Chats, history and read markers. Each route parses, calls one core service and shapes the reply."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ..deps import CurrentAuth, ServicesDep
from ..frames import chat_json, message_json

router = APIRouter(prefix="/api/chats")


class NewChat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    members: list[str] = Field(max_length=10_000)
    title: str | None = None


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None  # required for text; a file message's optional caption
    client_msg_id: str | None = None
    file_id: str | None = None


class ReadMarker(BaseModel):
    model_config = ConfigDict(extra="ignore")
    seq: int = Field(ge=0)


@router.post("", status_code=201)
async def create_chat(body: NewChat, auth: CurrentAuth, services: ServicesDep, response: Response) -> dict[str, Any]:
    view, created = await services.chats.create_chat(auth.user, body.members, body.title)
    if not created:
        response.status_code = 200
    return {"chat": chat_json(view)}


@router.get("")
async def inbox(auth: CurrentAuth, services: ServicesDep) -> dict[str, Any]:
    return {"chats": [chat_json(v) for v in await services.chats.inbox(auth.user)]}


@router.get("/{chat_id}/messages")
async def history(
    chat_id: str,
    auth: CurrentAuth,
    services: ServicesDep,
    limit: int = Query(50),
    before: int | None = Query(None),
    after: int | None = Query(None),
) -> dict[str, Any]:
    messages, has_more = await services.messages.history(auth.user, chat_id, before=before, after=after, limit=limit)
    return {"messages": [message_json(m) for m in messages], "has_more": has_more}


@router.post("/{chat_id}/messages", status_code=201)
async def send(chat_id: str, body: NewMessage, auth: CurrentAuth, services: ServicesDep) -> dict[str, Any]:
    message, _ = await services.messages.send(
        auth.user, chat_id, body.content, body.client_msg_id, file_id=body.file_id
    )
    return {"message": message_json(message)}


@router.post("/{chat_id}/read", status_code=204)
async def mark_read(chat_id: str, body: ReadMarker, auth: CurrentAuth, services: ServicesDep) -> Response:
    await services.chats.mark_read(auth.user, chat_id, body.seq)
    return Response(status_code=204)
