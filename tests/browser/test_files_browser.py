"""File sharing in real Chromium: attach an image, upload it straight to storage, the peer sees its preview."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.browser.ui import Tab, chat_link, new_username, sign_up_api, start_direct_chat
from tests.services.server import ThreadServer

pytestmark = pytest.mark.browser


def png(width: int, height: int) -> bytes:
    """A real RGB PNG (a gradient), so the browser has something to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 10 % 256, y * 16 % 256, 160)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def attach(tab: Tab, name: str, mime: str, data: bytes) -> None:
    button = tab.page.get_by_role("button", name="Attach a file")
    with tab.page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


def test_attached_image_shows_as_a_preview_for_the_peer(server: ThreadServer, open_tab: Callable[..., Tab]) -> None:
    """Alice attaches a PNG; both see the file card, Bob's preview image loads, a refused type says why."""
    alice, bob = open_tab(server), open_tab(server)
    sign_up_api(alice, new_username("alice"))
    sign_up_api(bob, new_username("bob"))
    start_direct_chat(alice.page, bob.username)
    chat_link(bob.page, alice.username).click()
    expect(bob.page.get_by_role("heading", name=alice.username, level=2)).to_be_visible()

    attach(alice, "sunset.png", "image/png", png(24, 16))
    card = bob.page.locator("#log-items .row[data-seq='1'] .file-card.file-image")
    expect(card).to_contain_text("sunset.png")
    preview = card.locator("img.file-preview")
    expect(preview).to_have_attribute("alt", "sunset.png")
    # The preview is the uploaded image itself, fetched through /api/files/{id} and its redirect.
    expect(preview).to_have_js_property("naturalWidth", 24)
    expect(alice.page.locator("#log-items .row.mine[data-seq='1'] img.file-preview")).to_have_js_property(
        "naturalHeight", 16
    )
    expect(alice.page.locator("#upload-status")).to_be_hidden()
    expect(chat_link(alice.page, re.compile(rf"^{bob.username}\b.*sunset\.png"))).to_be_visible()
    bob.screenshot("file-preview")

    attach(alice, "page.html", "text/html", b"<p>not a file we take</p>")
    status = alice.page.locator("#upload-status")
    expect(status).to_be_visible()
    expect(status).to_contain_text("not accepted")
    expect(bob.page.locator("#log-items .row[data-seq]")).to_have_count(1)
