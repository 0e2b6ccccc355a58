"""Move in the admin, in headless Chromium against a live server: an operator selects every
one of 1,000 pending jobs a filter shows, moves them to another queue and priority, and the
database says all 1,000 moved and nothing else did. A screenshot of the form goes to the
test's tmp_path."""

import pytest
from django.contrib.admin.models import LogEntry
from playwright.sync_api import expect

from jobs.models import JobState
from tests.browser import log_in
from tests.e2e.conftest import PASSWORD, USERNAME
from tests.testapp.models import StepJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JOBS = 1_000


def test_an_operator_moves_a_thousand_pending_jobs_to_the_big_workers(page, operator, tmp_path):
    StepJob.objects.bulk_enqueue([StepJob(steps=1) for _ in range(JOBS)], queue="small")
    bystander = StepJob.objects.create(steps=1).enqueue(queue="other")
    log_in(page, USERNAME, PASSWORD)
    page.goto("/admin/testapp/stepjob/?queue=small")
    page.check("#action-toggle")
    page.click(".question a")  # "Select all 1000 step jobs"
    page.select_option("select[name=action]", "move_jobs")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_have_text(f"Move {JOBS} jobs")
    page.fill("#id_queue", "big")
    page.fill("#id_priority", "10")
    page.screenshot(path=tmp_path / "move.png", full_page=True)
    page.click(".job-move-yes")
    expect(page.locator(".messagelist")).to_contain_text(f"{JOBS} jobs moved.")

    moved = StepJob.objects.filter(queue="big", priority=10, state=JobState.PENDING)
    assert moved.count() == JOBS
    assert StepJob.objects.get(pk=bystander.pk).queue == "other"
    assert LogEntry.objects.filter(change_message__startswith="Move: queue small").count() == JOBS
