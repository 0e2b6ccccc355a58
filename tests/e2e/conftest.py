"""Fixtures for the browser tests: one Chromium per test, a fresh page per test.

When `python -m tests` found no browser it says so once and skips these tests (it passes the
reason in TESTS_SKIP_BROWSER); run by plain `pytest` without Chromium, they fail saying what
to install (`tests.browser.BrowserUnavailable`).
"""

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.browser import SKIP_BROWSER_TESTS, VIEWPORT, chromium
from tests.conftest import start_manage

USERNAME = "operator"
PASSWORD = "a-long-operator-password"


def pytest_collection_modifyitems(config, items):
    """Skip the browser tests, before any live server starts, when the test command says to.

    A conftest's hook sees every collected item, not only this folder's: hence the marker.
    """
    reason = os.environ.get(SKIP_BROWSER_TESTS)
    if not reason:
        return
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def browser(live_server):
    """Per test, after the live server (and so the database) is up: while Playwright runs,
    the ORM's guard against async code is off (see `tests.browser`), so not for longer."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh browser context (no cookies), its relative URLs on the live server."""
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(USERNAME, password=PASSWORD)


@contextmanager
def running_worker(*args: str, **env: str) -> Iterator[subprocess.Popen]:
    """A real `runjobs ARGS` for a browser test, stopped with SIGTERM afterwards, whether the
    test passed or not (a worker left running would claim the next tests' jobs), and killed,
    failing the test, if it does not stop within 30 s."""
    process = start_manage("runjobs", *args, **env)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
