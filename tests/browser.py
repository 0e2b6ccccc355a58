"""Headless Chromium for the browser tests and the screenshots, driven by Playwright.

The browser is the system's (Debian's `chromium` package), never one Playwright downloads:
`playwright install` is not part of any setup, so nothing is fetched when tests run.
`TESTS_CHROMIUM` names another Chromium binary (the test command's own tests point it at a
missing path to play a machine without one).

A missing browser is an error that says what to install (`BrowserUnavailable`), never a skip
decided here: `python -m tests` calls `check_available()` once, up front, and by default skips
the browser tests saying so; with `--browser require`, or `--browser install` (CI) once
`install()` has run, it fails instead, so CI never passes without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")  # where `apt-get install chromium` puts it
CHROMIUM = Path(os.environ.get("TESTS_CHROMIUM") or DEBIAN_CHROMIUM)
INSTALL_CHROMIUM = "apt-get install chromium"
INSTALL_PLAYWRIGHT = ".venv/bin/pip install -r requirements.txt"
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
# Set by `python -m tests` to the reason it skips the browser tests; tests/e2e/conftest.py
# reads it. Never set by hand: `-m "not e2e"` leaves them out.
SKIP_BROWSER_TESTS = "TESTS_SKIP_BROWSER"
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
    """Chromium or Playwright is not installed.

    ``missing`` says what is not there and ``remedy`` the command that installs it, so the
    test command can word its skip line from them; ``str()`` is both, as one message.
    """

    def __init__(self, missing: str, remedy: str) -> None:
        super().__init__(f"{missing}: install it with `{remedy}`")
        self.missing = missing
        self.remedy = remedy


def check_available() -> None:
    """Raise BrowserUnavailable unless Chromium and Playwright for Python are both installed.

    Cheap (nothing is imported or started), so the test command can ask before any pass.
    """
    if not CHROMIUM.exists():
        raise BrowserUnavailable(f"no Chromium at {CHROMIUM}", INSTALL_CHROMIUM)
    if importlib.util.find_spec("playwright") is None:
        # Never `playwright install`: the system's Chromium is used.
        raise BrowserUnavailable("no Playwright for Python", INSTALL_PLAYWRIGHT)


class BrowserInstallFailed(RuntimeError):
    """`install()` could not install what is missing; the message says what to do instead."""


def install() -> None:
    """Install what `check_available()` finds missing, then check again.

    Chromium comes from Debian's package (`apt-get update`, `apt-get install chromium`), as
    root or else through sudo, which may ask for a password; Playwright from requirements.txt
    into this interpreter's environment. Raises BrowserInstallFailed (with the end of the
    installer's output) if an installer fails, and BrowserUnavailable if what it installed is
    still not where `check_available()` looks (e.g. `TESTS_CHROMIUM` names another path).
    """
    if not CHROMIUM.exists():
        apt_get = [*_as_root(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        _run_installer([*apt_get, "update", "-qq"])
        _run_installer([*apt_get, "install", "-y", "-qq", "chromium"])
    if importlib.util.find_spec("playwright") is None:
        _run_installer([sys.executable, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
        importlib.invalidate_caches()
    check_available()


def _as_root() -> list[str]:
    """The prefix that runs apt-get as root: none when we are root, else sudo."""
    if not shutil.which("apt-get"):
        raise BrowserInstallFailed(
            "no apt-get here to install Chromium: install it with your system's package "
            "manager and set TESTS_CHROMIUM to its path"
        )
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise BrowserInstallFailed(f"installing Chromium needs root: run `{INSTALL_CHROMIUM}` as root")


def _run_installer(command: list[str]) -> None:
    """Run one installer quietly (no prompts on stdin); on failure raise with its output's end."""
    result = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        tail = "\n".join(output[-15:])
        raise BrowserInstallFailed(
            f"`{' '.join(command)}` failed (exit {result.returncode})\n{tail}"
        )


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on the way out."""
    check_available()
    from playwright.sync_api import sync_playwright  # here: check_available() reports it missing

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
