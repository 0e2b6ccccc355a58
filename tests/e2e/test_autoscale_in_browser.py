"""Autoscaling in headless Chromium against a live server and a real supervisor: the operator
watches the live workers page while a burst of slow jobs grows the worker processes from one
to three, and, once the burst is done, shrinks them back to one, each decision on the page."""

import pytest
from playwright.sync_api import expect

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.integration.test_supervisor import enqueue, executions
from tests.testapp.models import RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AUTOSCALING = (
    *("--processes", "1-3", "--threads", "2", "--no-clock", "--interval", "0.2"),
    *("--scale-up-after", "1", "--scale-down-after", "3"),
)
WITHIN = 40_000  # ms


def test_watch_a_burst_grow_the_workers_to_three_and_idleness_shrink_them_to_one(
    page, operator, tmp_path
):
    log_in(page, USERNAME, PASSWORD)
    with running_worker(*AUTOSCALING, JOBS_LEASE_SECONDS="4"):
        wait_for(lambda: WorkerRow.objects.filter(supervisor__isnull=False).exists(), 30)
        page.goto("/admin/jobs/worker/?status=alive")
        page.locator(".job-live input").check()
        supervisor = page.locator("#result_list tr", has_text="keeps")
        expect(supervisor).to_contain_text("keeps 1 of 1-3")
        page.evaluate("window.jobsMarker = 'still the same page'")

        jobs = enqueue(24, sleep_seconds=1.0)
        expect(supervisor).to_contain_text("keeps 3 of 1-3", timeout=WITHIN)
        expect(supervisor).to_contain_text("2 → 3: the oldest job in default waited")
        expect(page.locator("#result_list .worker-status.alive")).to_have_count(4, timeout=WITHIN)
        page.screenshot(path=tmp_path / "autoscale-grown.png", full_page=True)

        wait_for(lambda: RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == 24, 60)
        expect(supervisor).to_contain_text("keeps 1 of 1-3", timeout=WITHIN)
        expect(supervisor).to_contain_text("2 → 1: no job waited for 3s")
        expect(page.locator("#result_list .worker-status.alive")).to_have_count(2, timeout=WITHIN)
        assert page.evaluate("window.jobsMarker") == "still the same page"
        page.screenshot(path=tmp_path / "autoscale-shrunk.png", full_page=True)

        page.goto("/admin/jobs/worker/?status=stopped")
        expect(page.locator("#result_list")).to_contain_text(
            "stopped by its supervisor: the queues needed one process fewer"
        )
    assert set(executions()) == {job.pk for job in jobs}
    assert set(executions().values()) == {1}
