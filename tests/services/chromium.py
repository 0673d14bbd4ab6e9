"""Debian's Chromium for Playwright: never a downloaded browser (RECIPES: executable_path, these flags)."""

CHROMIUM = "/usr/bin/chromium"
# Headless as root on a machine without internet: no sandbox, no GPU, no background traffic.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
