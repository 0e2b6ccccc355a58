"""Live pages in headless Chromium against a live server and a real worker: the dashboard's
numbers change by themselves, without the page reloading; a job's page, once made live,
follows its job from pending to succeeded; the box remembers being ticked."""

import pytest
from playwright.sync_api import expect

from jobs.admin.display import LIVE_INTERVAL_SECONDS
from tests.browser import log_in
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.factories import InstanceProvisionFactory

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROVISIONS_ROW = 'tr[data-row="instances.instanceprovision"]'
WITHIN = (3 * LIVE_INTERVAL_SECONDS) * 1000  # ms: a refresh or two, and the worker


def test_the_dashboard_updates_itself_without_reloading(page, operator):
    log_in(page, USERNAME, PASSWORD)
    page.goto("/admin/jobs/worker/dashboard/")
    expect(page.locator(".job-live input")).to_be_checked()
    expect(page.locator(f"{PROVISIONS_ROW} td.pending")).to_have_text("0")
    page.evaluate("window.jobsMarker = 'still the same page'")
    InstanceProvisionFactory.create_batch(3, enqueue=True)
    expect(page.locator(f"{PROVISIONS_ROW} td.pending")).to_have_text("3", timeout=WITHIN)
    assert page.evaluate("window.jobsMarker") == "still the same page"
    expect(page.locator(".job-live-status")).to_contain_text("updated")


def test_a_live_job_page_follows_its_job_and_the_box_is_remembered(page, operator):
    job = InstanceProvisionFactory(enqueue=True, enqueue__delay=1)
    log_in(page, USERNAME, PASSWORD)
    page.goto(f"/admin/instances/instanceprovision/{job.pk}/change/")
    box = page.locator(".job-live input")
    expect(box).not_to_be_checked()
    box.check()
    page.fill("#id_max_attempts", "7")  # an edit in progress survives the refreshes
    with running_worker("--interval", "0.1"):
        expect(page.locator("#job-operations")).to_contain_text("Succeeded", timeout=WITHIN)
    assert page.input_value("#id_max_attempts") == "7"
    page.reload()
    expect(page.locator(".job-live input")).to_be_checked()
