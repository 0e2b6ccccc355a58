"""Finding a leak in headless Chromium against a live server and a real worker: jobs that keep
memory for the life of their process top the dashboard's memory ranking, and the workers page
draws the process's memory climbing. (Where the ranking's links lead is checked with the test
client: these test job models have no admin pages to link to.)"""

import pytest
from playwright.sync_api import expect

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import HOARDED_MB, RecordingJob, UrgentJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_leaking_job_model_tops_the_ranking_and_its_worker_s_memory_climbs(
    page, operator, tmp_path
):
    # A fresh process's first attempt or two fill the room below its start-up peak and read
    # low: five, so that the median is one that raised the peak by all it kept.
    hoarders = RecordingJobFactory.create_batch(5, behaviour="hoard", enqueue=True)
    UrgentJobFactory.create_batch(5, enqueue=True)
    with running_worker("--threads", "1", "--interval", "0.1", JOBS_LEASE_SECONDS="2"):
        wait_for(lambda: RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == 5, 60)
        wait_for(lambda: UrgentJob.objects.filter(state=JobState.SUCCEEDED).count() == 5, 60)
        worker = WorkerRow.objects.get()
        wait_for(lambda: len(WorkerRow.objects.get().memory_samples) >= 4, 30, "heartbeats")

        log_in(page, USERNAME, PASSWORD)
        page.goto("/admin/jobs/worker/dashboard/")
        ranking = page.locator("#memory tbody tr")
        expect(ranking.first).to_contain_text("Recording jobs")
        median = float(ranking.first.locator(".median").inner_text().split()[0])
        assert HOARDED_MB - 1 <= median <= HOARDED_MB + 1
        expect(ranking.nth(1)).to_contain_text("Urgent jobs")
        page.locator("#memory").screenshot(path=tmp_path / "memory-ranking.png")

        page.goto("/admin/jobs/worker/")
        row = page.locator("#result_list tr", has_text=worker.name)
        expect(row.locator("svg.worker-memory polyline")).to_have_count(1)
        expect(row.locator("td.field-memory")).to_contain_text("MB")
        page.goto(f"/admin/jobs/worker/{worker.pk}/change/")
        expect(page.locator("body")).to_contain_text("Memory over time")
        page.screenshot(path=tmp_path / "worker-memory.png", full_page=True)
    grown = RecordingJob.objects.filter(pk__in=[hoarder.pk for hoarder in hoarders])
    assert grown.filter(memory_growth_kb__gte=(HOARDED_MB - 1) * 1024).count() >= 3
