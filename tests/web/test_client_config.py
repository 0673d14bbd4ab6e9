"""``GET /api/config``: what the browser client reads before anyone signs in, and the page it serves."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.services.server import ThreadServer


async def test_config_needs_no_session(make_server: Callable[..., ThreadServer]) -> None:
    """Anyone gets the providers, the content limit and the feature switches; unknown query is ignored."""
    server = make_server(port=0, max_message_chars=321)
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/config", params={"x": "1"})
    assert r.status_code == 200
    body = r.json()
    assert body["max_message_chars"] == 321
    assert isinstance(body["providers"], list)
    assert all(set(p) >= {"id", "name", "login_url"} for p in body["providers"])
    assert isinstance(body["features"], dict) and isinstance(body["features"]["files"], bool)


async def test_page_and_modules_are_served_with_their_types(make_server: Callable[..., ThreadServer]) -> None:
    """/ is the HTML shell (never cached stale), modules are JavaScript, unknown files are not_found."""
    server = make_server(port=0)
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        assert "<script" in page.text and 'type="module"' in page.text
        assert "style=" not in page.text and "onclick" not in page.text  # nothing the CSP would block
        js = await http.get("/static/js/connection.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert (await http.get("/favicon.ico")).headers["content-type"] == "image/svg+xml"
        missing = await http.get("/static/nope.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        outside = await http.get("/static/%2E%2E/security.py")
        assert outside.status_code == 404
