"""Files: upload grants, the attachments of file messages, download links, and the purge of unused grants.

The bytes never pass through here: the BlobStore signs URLs that browsers use directly. This module
decides who may have which URL, checks names, types and sizes, and keeps the records straight: a grant
is recorded ``pending`` before its URL is handed out; the message that carries it flips it to ``sent``
and charges the uploader's storage (atomically, in the store); a grant no message took is purged,
blob first, once void.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
import uuid
from collections.abc import Iterable
from urllib.parse import quote

from .chats import ChatService
from .errors import BadRequest, NotFound, QuotaExceeded, RateLimited, TooLarge
from .limits import TierPolicy, TokenBuckets
from .models import FileRecord, FileRef, Upload, User, utc_day
from .periodic import Periodic
from .ports import BlobStore, Clock, FileStore, UsageStore

log = logging.getLogger("stratochat.files")

# Images, PDF, plain text, and common office and archive formats. Browsers report some types under
# older names (zip as application/x-zip-compressed on Windows, gzip as application/x-gzip): both count.
DEFAULT_CONTENT_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/rtf",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-rar-compressed",
)
# Shown inline (previews); everything else downloads as an attachment.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Types a browser would run as a document or script. Even as attachments they are served as opaque
# bytes, so no browser or proxy ever renders them from our storage's origin.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-shockwave-flash",
        "text/xsl",
        "application/rdf+xml",
        "multipart/x-mixed-replace",
    }
)
FILENAME_MAX_BYTES = 255
# Bidirectional controls (Trojan Source): they make "gpj.exe" display as "exe.jpg".
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_FILE_ID = re.compile(r"^[0-9a-f]{32}$")
_ASCII_SAFE = re.compile(r"[^A-Za-z0-9 !#$%&'()*+,.:;<=>?@\[\]^_`{|}~-]")
# How many expired grants one purge round takes from the store.
PURGE_BATCH = 500


def parse_content_types(spec: str | None) -> frozenset[str]:
    """The allow-list from a comma-separated setting; unset or blank: the defaults."""
    if spec is None or not spec.strip():
        return frozenset(DEFAULT_CONTENT_TYPES)
    types = {t.strip().lower() for t in spec.split(",") if t.strip()}
    bad = sorted(t for t in types if not _CONTENT_TYPE.match(t))
    if bad:
        raise ValueError(f"not a media type: {', '.join(bad)}")
    return frozenset(types)


def clean_filename(raw: object) -> str:
    """The name as shown and offered on download: NFC, trimmed, at most 255 bytes of UTF-8, with no
    path separator, control, bidi or line-separator character. Anything else is refused."""
    if not isinstance(raw, str):
        raise BadRequest("filename must be a string")
    name = unicodedata.normalize("NFC", raw).strip()
    if not name or name in (".", ".."):
        raise BadRequest("filename must not be empty")
    for ch in name:
        if ch in "/\\":
            raise BadRequest("filename must not contain path separators")
        if ch in BIDI_CONTROLS:
            raise BadRequest("filename must not contain bidirectional control characters")
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch == "\ufeff":
            raise BadRequest("filename must not contain control characters")
    if len(name.encode()) > FILENAME_MAX_BYTES:
        raise BadRequest(f"filename must be at most {FILENAME_MAX_BYTES} bytes of UTF-8")
    return name


def clean_content_type(raw: object, allowed: frozenset[str]) -> str:
    """A bare media type (parameters such as ``charset`` are dropped) from the allow-list."""
    if not isinstance(raw, str):
        raise BadRequest("content_type must be a string")
    media = raw.split(";", 1)[0].strip().lower()
    if not _CONTENT_TYPE.match(media):
        raise BadRequest("content_type must be a media type such as image/png")
    if media not in allowed:
        raise BadRequest(f"files of type {media} are not accepted")
    return media


def check_size(raw: object, max_bytes: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
        raise BadRequest("size must be a positive integer (bytes)")
    if raw > max_bytes:
        raise TooLarge(f"file is {raw} bytes; the limit of your tier is {max_bytes}")
    return raw


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: a plain-ASCII ``filename`` for old clients and the exact name as UTF-8 ``filename*``."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = _ASCII_SAFE.sub("_", fallback).strip() or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def served_as(content_type: str) -> tuple[str, str]:
    """``(Content-Type, disposition kind)`` a download is served with: raster images inline, the rest
    as attachments, and types a browser would execute as opaque bytes."""
    if content_type in INLINE_TYPES:
        return content_type, "inline"
    if content_type in ACTIVE_TYPES or "html" in content_type or "xml" in content_type or "script" in content_type:
        return "application/octet-stream", "attachment"
    return content_type, "attachment"


class FileService:
    def __init__(
        self,
        files: FileStore,
        usage: UsageStore,
        blobs: BlobStore,
        chats: ChatService,
        clock: Clock,
        *,
        tiers: TierPolicy,
        url_ttl_s: float,
        pending_ttl_s: float,
        content_types: Iterable[str],
        grants: TokenBuckets,
    ) -> None:
        self._files = files
        self._usage = usage
        self._blobs = blobs
        self._chats = chats
        self._clock = clock
        self._tiers = tiers
        # Signed URLs have second precision.
        self._url_ttl_s = max(1, math.ceil(url_ttl_s))
        self._pending_ttl_ms = round(pending_ttl_s * 1000)
        self.content_types = frozenset(content_types)
        self._grants = grants

    @property
    def url_ttl_s(self) -> int:
        return self._url_ttl_s

    async def create_upload(
        self, user: User, chat_id: object, filename: object, content_type: object, size: object, *, origin: str
    ) -> Upload:
        """Grant the caller, a member of the chat (else ``NotFound``), one upload. Refused before
        anything is recorded: a bad name or type (``BadRequest``), a size over the tier's file limit
        (``TooLarge``), a file the tier's storage quota or daily message limit could not take
        (``QuotaExceeded``; checked again, atomically, when the file is sent), too many grants at once
        (``RateLimited``)."""
        await self._chats.require_member(user.user_id, chat_id)
        assert isinstance(chat_id, str)
        name = clean_filename(filename)
        media = clean_content_type(content_type, self.content_types)
        limits = self._tiers.limits_for(user)
        nbytes = check_size(size, limits.max_file_bytes)
        now = self._clock.now_ms()
        usage = await self._usage.get_usage(user.user_id, utc_day(now))
        if usage.storage_bytes + nbytes > limits.storage_bytes:
            raise QuotaExceeded(
                f"storage quota reached: {usage.storage_bytes} of {limits.storage_bytes} bytes used; "
                f"this file needs {nbytes}"
            )
        if limits.daily_messages is not None and usage.messages_today >= limits.daily_messages:
            raise QuotaExceeded(f"daily limit of {limits.daily_messages} messages reached; it resets at 00:00 UTC")
        wait = self._grants.take(user.user_id)
        if wait > 0:
            raise RateLimited("requesting uploads too fast; slow down", wait)
        file_id = uuid.uuid4().hex
        url_expires_at = now + self._url_ttl_s * 1000
        record = FileRecord(
            file_id=file_id,
            chat_id=chat_id,
            uploader_id=user.user_id,
            filename=name,
            content_type=media,
            size=nbytes,
            key=f"uploads/{file_id}",
            created_at=now,
            # Sendable for a while after the upload URL expired (the upload may end just in time).
            expires_at=url_expires_at + self._pending_ttl_ms,
        )
        # Recorded before the URL exists, so no blob can ever be uploaded without a record to purge it.
        await self._files.create_file(record)
        grant = await self._blobs.presign_upload(
            record.key, content_type=media, size=nbytes, expires_in=self._url_ttl_s, origin=origin
        )
        return Upload(file_id, grant.url, grant.fields, grant.expires_at)

    async def attachment(self, user: User, chat_id: str, file_id: object) -> FileRef:
        """The file a message of ``user`` in ``chat_id`` may carry: granted to the user for this chat,
        not sent yet, and stored with exactly the declared size (asked of the storage itself; an object
        of another size is deleted). Otherwise ``BadRequest``. The store checks the record again when it
        stores the message, so this is not the last word on races."""
        if not isinstance(file_id, str) or not _FILE_ID.match(file_id):
            raise BadRequest("no such file; request an upload first")
        record = await self._files.get_file(file_id)
        if record is None or record.uploader_id != user.user_id:
            raise BadRequest("no such file; request an upload first")
        if record.chat_id != chat_id:
            raise BadRequest("this file was granted for another chat")
        if record.status != "pending":
            raise BadRequest("this file was already sent")
        if self._clock.now_ms() >= record.expires_at:
            raise BadRequest("this upload expired; upload the file again")
        stored = await self._blobs.stat(record.key)
        if stored is None:
            raise BadRequest("the file has not been uploaded yet")
        if stored != record.size:
            # Only a store that does not enforce its own policy lets this happen; do not keep it.
            await self._blobs.delete(record.key)
            raise BadRequest(f"the uploaded file has {stored} bytes, not the {record.size} declared")
        return record.ref()

    async def download_url(self, user: User, file_id: object, *, origin: str) -> str:
        """A short-lived URL of a sent file for a member of its chat; ``NotFound`` for anyone else,
        exactly as for a file that does not exist."""
        if not isinstance(file_id, str) or not _FILE_ID.match(file_id):
            raise NotFound("no such file")
        record = await self._files.get_file(file_id)
        if record is None or record.status != "sent":
            raise NotFound("no such file")
        try:
            await self._chats.require_member(user.user_id, record.chat_id)
        except NotFound:
            raise NotFound("no such file") from None
        media, kind = served_as(record.content_type)
        return await self._blobs.presign_download(
            record.key,
            content_type=media,
            disposition=content_disposition(kind, record.filename),
            expires_in=self._url_ttl_s,
            origin=origin,
        )

    async def purge_expired(self) -> int:
        """Delete void grants and their blobs (blob first, so a failure leaves the record to retry).
        Returns how many were purged."""
        # A little past the deadline the send path uses, so a node whose clock lags cannot accept a
        # file that a node ahead of it already purged.
        grace_ms = min(30_000, self._pending_ttl_ms)
        purged = 0
        for _ in range(20):
            records = await self._files.expired_files(self._clock.now_ms() - grace_ms, PURGE_BATCH)
            done = []
            for r in records:
                try:
                    await self._blobs.delete(r.key)
                except Exception:
                    log.warning("could not delete the blob of expired upload %s", r.file_id, exc_info=True)
                    continue
                done.append(r.file_id)
            if done:
                await self._files.delete_pending_files(done)
            purged += len(done)
            if len(records) < PURGE_BATCH or not done:
                break
        return purged


class FilePurger(Periodic):
    """Runs ``FileService.purge_expired`` every ``interval_s`` seconds until closed."""

    name = "file-purger"
    failure = "purge of expired uploads failed"

    def __init__(self, files: FileService, interval_s: float) -> None:
        super().__init__(interval_s)
        self._files = files

    async def step(self) -> None:
        n = await self._files.purge_expired()
        if n:
            log.info("purged %d expired uploads", n)
