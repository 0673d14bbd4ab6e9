"""Files: upload grants and download links (``/api``), and the URLs of the embedded file store.

With S3 the browser talks to the bucket and ``/blobs/*`` answers 404; with the embedded (local disk)
store this app serves those signed URLs itself: the signature is the authorization, no session needed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile
from starlette.responses import FileResponse, RedirectResponse, Response

from ...adapters.blobs.disk import DOWNLOAD_PATH, FORM_OVERHEAD, UPLOAD_PATH, DiskBlobStore
from ...core.errors import BadRequest, NotFound, TooLarge
from ...core.models import iso_ms
from ...settings import Settings
from ..deps import CurrentAuth, ServicesDep
from ..security import BodyTooLarge
from ..security import capped as capped_receive

router = APIRouter(prefix="/api")
blob_router = APIRouter(include_in_schema=False)

# What a downloaded file may do when opened in its own tab: nothing (no scripts, no plugins, no forms).
BLOB_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


class NewUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    # Checked by the core (one set of rules and messages for every caller).
    filename: Any = None
    content_type: Any = None
    size: Any = None


def public_origin(request: Request) -> str:
    """Where clients reach this app: ``STRATOCHAT_PUBLIC_URL``, else the request's own origin (its
    scheme as uvicorn saw it through trusted proxies)."""
    settings: Settings = request.state.settings
    if settings.public_url:
        return settings.public_url
    return f"{request.url.scheme}://{request.url.netloc}"


@router.post("/chats/{chat_id}/files", status_code=201)
async def create_upload(
    chat_id: str, body: NewUpload, request: Request, auth: CurrentAuth, services: ServicesDep
) -> dict[str, Any]:
    upload = await services.files.create_upload(
        auth.user, chat_id, body.filename, body.content_type, body.size, origin=public_origin(request)
    )
    return {
        "upload": {
            "file_id": upload.file_id,
            "url": upload.url,
            "fields": upload.fields,
            "expires_at": iso_ms(upload.expires_at),
        }
    }


@router.get("/files/{file_id}")
async def download(file_id: str, request: Request, auth: CurrentAuth, services: ServicesDep) -> Response:
    url = await services.files.download_url(auth.user, file_id, origin=public_origin(request))
    ttl = services.files.url_ttl_s
    # The browser may reuse the redirect while the URL it points at is surely still valid.
    cache = f"private, max-age={ttl // 2}" if ttl >= 2 else "no-store"
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": cache})


def _disk_store(request: Request) -> DiskBlobStore:
    blobs = request.state.blobs
    if not isinstance(blobs, DiskBlobStore):
        raise NotFound("no such resource")
    return blobs


@blob_router.post(UPLOAD_PATH)
async def blob_upload(request: Request, token: str = Query("")) -> Response:
    store = _disk_store(request)
    ticket = store.check_upload(token)  # before reading a byte of the body
    limit = ticket.size + FORM_OVERHEAD
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"the file is larger than the {ticket.size} bytes granted")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise BadRequest("send the fields and the file as multipart/form-data")
    capped = Request(request.scope, capped_receive(request.receive, limit))
    try:
        form = await capped.form(max_files=1, max_fields=32, max_part_size=FORM_OVERHEAD)
    except BodyTooLarge:
        raise TooLarge(f"the file is larger than the {ticket.size} bytes granted") from None
    try:
        if form.get("Content-Type") != ticket.content_type:
            raise BadRequest(f"this upload must have Content-Type {ticket.content_type}")
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise BadRequest("the file must be the form field 'file'")
        await store.store(ticket, file.file)
    finally:
        await form.close()
    return Response(status_code=204)


@blob_router.get(DOWNLOAD_PATH)
async def blob_download(request: Request, token: str = Query("")) -> Response:
    store = _disk_store(request)
    ticket = store.check_download(token)
    path = store.path_of(ticket.key)
    if not path.is_file():
        raise NotFound("no such file")
    return FileResponse(
        path,
        media_type=ticket.content_type,
        headers={
            "Content-Disposition": ticket.disposition,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": BLOB_CSP,
            "Cache-Control": "private, max-age=300",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )
