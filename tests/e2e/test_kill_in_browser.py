"""Kill in headless Chromium against a live server and a real supervised worker: an operator
cancels a job that ignores it, kills it after the confirmation page, and sees the attempt
recorded as killed and the worker replaced."""

import pytest
from playwright.sync_api import expect

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.integration.test_kill import worker_pids
from tests.testapp.models import PhasedJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_kill_a_job_that_ignores_cancel_and_see_its_worker_replaced(page, operator, tmp_path):
    job = PhasedJob.objects.create(stubborn=True).enqueue()
    with running_worker("--processes", "1", "--interval", "0.1"):
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.RUNNING, 30)
        first = worker_pids()
        log_in(page, USERNAME, PASSWORD)
        page.goto(f"/admin/testapp/phasedjob/{job.pk}/change/")
        page.click("button[value=cancel]")
        expect(page.locator("#job-operations")).to_contain_text("Stop requested")
        page.click("button[value=kill]")
        expect(page.locator("#content-main")).to_contain_text("For a job that ignores Cancel")
        page.screenshot(path=tmp_path / "kill-confirm.png", full_page=True)
        page.click(".job-confirm-yes")
        expect(page.locator(".messagelist")).to_contain_text("1 job asked to be killed.")
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.FAILED, 30)
        page.reload()
        expect(page.locator("body")).to_contain_text("jobs.errors.JobKilled")
        expect(page.locator("body")).to_contain_text("Stack of the job when it was killed")
        wait_for(lambda: worker_pids() - first, 30)
        page.goto("/admin/jobs/worker/")
        fresh = (worker_pids() - first).pop()
        expect(page.locator("#result_list")).to_contain_text(str(fresh))
    assert WorkerRow.objects.filter(pid=fresh).exists()
