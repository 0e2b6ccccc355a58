"""Where a running job is, in headless Chromium against a live server and a real worker: the
job's live page shows the stack of the thread running it, and shows it change when the job
moves on; "Refresh stack" asks for it now."""

import pytest
from playwright.sync_api import expect

from jobs.lease import STACK_INTERVAL
from jobs.models import JobState
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.testapp.models import PhasedJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WITHIN = (STACK_INTERVAL + 10) * 1000  # ms: a stack written, then a live refresh


def test_watch_a_running_jobs_stack_change(page, operator, tmp_path):
    job = PhasedJob.objects.create(secret="tok-in-the-stack").enqueue()
    with running_worker("--interval", "0.1"):
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.RUNNING, 30)
        log_in(page, USERNAME, PASSWORD)
        page.goto(f"/admin/testapp/phasedjob/{job.pk}/change/")
        page.locator(".job-live input").check()
        page.click(".job-refresh-stack")
        stack = page.locator(".job-stack")
        expect(stack).to_contain_text("in first_phase", timeout=WITHIN)
        expect(stack).not_to_contain_text("tok-in-the-stack")
        page.screenshot(path=tmp_path / "stack.png", full_page=True)
        PhasedJob.objects.filter(pk=job.pk).update(go=True)
        expect(stack).to_contain_text("in second_phase", timeout=WITHIN)
        page.click("button[value=cancel]")
        wait_for(lambda: PhasedJob.objects.get(pk=job.pk).state == JobState.CANCELLED, 30)
