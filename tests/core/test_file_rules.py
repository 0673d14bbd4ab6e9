"""File names, media types and download headers: the pure rules of core/files.py."""

from __future__ import annotations

import pytest

from stratochat.core.errors import BadRequest, TooLarge
from stratochat.core.files import (
    DEFAULT_CONTENT_TYPES,
    check_size,
    clean_content_type,
    clean_filename,
    content_disposition,
    parse_content_types,
    served_as,
)

ALLOWED = parse_content_types(None)


def test_filenames_are_normalised_or_refused() -> None:
    """Names are trimmed and NFC; separators, controls, bidi controls and over-255-byte names are refused."""
    assert clean_filename("  Cafe\u0301 menu.pdf ") == "Café menu.pdf"
    assert clean_filename("日本語のファイル.txt") == "日本語のファイル.txt"
    assert clean_filename(".hidden") == ".hidden"
    assert clean_filename("x" * 255) == "x" * 255
    for bad in (
        "a/b",
        "a\\b",
        "tab\there",
        "nul\x00",
        "del\x7f",
        "c\rr",
        "\u202eexe.png",
        "a\u2067b",
        "a\u200fb",
        "line\u2028sep",
        "bom\ufeff",
        "",
        " ",
        ".",
        "..",
        "é" * 128,
        12,
        None,
    ):
        with pytest.raises(BadRequest):
            clean_filename(bad)


def test_content_types() -> None:
    """The allow-list holds images, PDF, text, office and archive types; parameters are dropped; junk refused."""
    for t in (
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
        "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ):
        assert t in DEFAULT_CONTENT_TYPES
    assert clean_content_type("Text/Plain; charset=UTF-8", ALLOWED) == "text/plain"
    for bad in ("image/svg+xml", "text/html", "application/octet-stream", "png", "image/", "/png", "a b/c", "", 3):
        with pytest.raises(BadRequest):
            clean_content_type(bad, ALLOWED)
    assert parse_content_types(" image/svg+xml , text/html ") == {"image/svg+xml", "text/html"}
    with pytest.raises(ValueError):
        parse_content_types("image/png,not a type")


def test_sizes() -> None:
    assert check_size(10, 10) == 10
    with pytest.raises(TooLarge):
        check_size(11, 10)
    for bad in (0, -5, True, 1.0, "3", None):
        with pytest.raises(BadRequest):
            check_size(bad, 10)


def test_content_disposition_follows_rfc_6266() -> None:
    """An ASCII fallback filename and the exact UTF-8 name as filename*; quotes and backslashes never leak."""
    assert content_disposition("inline", "a.png") == "inline; filename=\"a.png\"; filename*=UTF-8''a.png"
    assert content_disposition("attachment", 'Ré"s\\umé; x.pdf') == (
        "attachment; filename=\"Re_s_ume; x.pdf\"; filename*=UTF-8''R%C3%A9%22s%5Cum%C3%A9%3B%20x.pdf"
    )
    assert content_disposition("attachment", "日本.txt").startswith('attachment; filename=".txt"; filename*=')
    assert content_disposition("attachment", "日本").startswith('attachment; filename="file";')


def test_only_raster_images_are_inline() -> None:
    """PNG, JPEG, GIF, WebP inline; SVG, HTML and other active types opaque attachments; the rest attachments."""
    for t in ("image/png", "image/jpeg", "image/gif", "image/webp"):
        assert served_as(t) == (t, "inline")
    for t in ("image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/javascript"):
        assert served_as(t) == ("application/octet-stream", "attachment")
    assert served_as("application/pdf") == ("application/pdf", "attachment")
    assert served_as("text/plain") == ("text/plain", "attachment")
