"""Headless Chromium for the browser tests and the screenshots, driven by Playwright.

The browser is the system's (Debian's `chromium` package), never one Playwright downloads:
`playwright install` is not part of any setup, so nothing is fetched when tests run. A missing
browser is an error that says what to install, not a skip: CI must not pass without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox: CI runs as root, where Chromium refuses to start with one. The rest keep a
# headless run quiet and offline: no GPU, no QUIC, no background updates or sync.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
ALLOW_ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed; the message says how to install it."""


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on the way out."""
    if not CHROMIUM.exists():
        raise BrowserUnavailable(
            f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
            "(bash .ci/run does)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable(
            "Playwright for Python is missing: .venv/bin/pip install -r requirements.txt "
            "(never `playwright install`: the system's Chromium is used)"
        ) from exc
    with _synchronous_orm_allowed(), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


@contextlib.contextmanager
def _synchronous_orm_allowed() -> Iterator[None]:
    """Let the ORM run while Playwright's synchronous API is in use.

    That API keeps an asyncio loop running in this thread (on a greenlet), which Django's
    guard against blocking calls from async code takes for async code: every ORM call would
    raise SynchronousOnlyOperation although none runs inside the loop. Django also gives the
    code a connection of its own while the loop runs, so `chromium()` closes it before the
    loop ends; left open, it would keep PostgreSQL from dropping the test database.
    """
    previous = os.environ.get(ALLOW_ASYNC_UNSAFE)
    os.environ[ALLOW_ASYNC_UNSAFE] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[ALLOW_ASYNC_UNSAFE]
        else:
            os.environ[ALLOW_ASYNC_UNSAFE] = previous


def log_in(page: Page, username: str, password: str) -> None:
    """Sign in through the admin's login form, as a person would (on the page's base URL)."""
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
