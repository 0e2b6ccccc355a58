"""Fixtures for the browser tests: one Chromium per session, a fresh page per test."""

import pytest

from tests.browser import VIEWPORT, chromium

USERNAME = "operator"
PASSWORD = "a-long-operator-password"


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
