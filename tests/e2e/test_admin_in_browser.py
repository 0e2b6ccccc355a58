"""The admin in headless Chromium, against a live server and a real `runjobs` process.

An operator's round trip: sign in, read the dashboard (and check it against the database),
follow a failure to its traceback, fix the cause, requeue the job and watch it succeed.
"""

import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from jobs.models import JobState
from project.instances.models import Instance, InstanceProvision
from tests.admin.test_dashboard import COUNTS, counted
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.factories import InstanceProvisionFactory, UrgentJobFactory
from tests.testapp.models import UrgentJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROVISIONS_ROW = 'tr[data-row="instances.instanceprovision"]'
SERVED_QUEUE = "average_slow"  # the worker leaves the urgent queue alone, so it stays pending


@pytest.fixture
def worker():
    """A real worker serving only the provisions' queue; stopped with SIGTERM afterwards."""
    with running_worker("--queues", SERVED_QUEUE, "--interval", "0.1") as process:
        yield process


def finished(*jobs) -> bool:
    states = InstanceProvision.objects.filter(pk__in=[job.pk for job in jobs])
    return not states.exclude(state__in=(JobState.SUCCEEDED, JobState.FAILED)).exists()


def shown_counts(page, row: str) -> dict[str, int]:
    return {name: int(page.inner_text(f"{row} td.{name}")) for name in COUNTS}


def test_an_operator_finds_a_failed_job_requeues_it_and_watches_it_succeed(page, operator, worker):
    good = [InstanceProvisionFactory(enqueue=True) for _ in range(2)]
    bad = InstanceProvisionFactory(instance__name="Bad_Name!", max_attempts=1, enqueue=True)
    InstanceProvisionFactory(enqueue=True, enqueue__delay=3600)
    UrgentJobFactory(enqueue=True)
    wait_for(lambda: finished(*good, bad))

    # The dashboard, from the admin index: its numbers are the database's.
    log_in(page, USERNAME, PASSWORD)
    page.click("text=Jobs dashboard")
    expect(page.locator("h1")).to_have_text("Jobs dashboard")
    # The counts this scene is about; the dashboard shows more, checked just below.
    expected = {"pending": 0, "scheduled": 1, "running": 0}
    expected |= {"failed_last_hour": 1, "failed_last_day": 1}
    shown = shown_counts(page, PROVISIONS_ROW)
    assert {name: shown[name] for name in expected} == expected
    now = timezone.now()
    assert shown_counts(page, PROVISIONS_ROW) == counted(InstanceProvision.objects, now)
    assert shown_counts(page, 'tr[data-row="testapp.urgentjob"]') == counted(UrgentJob.objects, now)
    assert int(page.inner_text('tr[data-row="urgent"] td.pending')) == 1
    assert page.inner_text(".workers-busy") == "0 of 1 worker busy"
    assert f":{worker.pid}" in page.inner_text("#workers tbody")

    # From the count of recent failures to the failed job and its traceback.
    page.click(f"{PROVISIONS_ROW} td.failed_last_hour a")
    page.click(f"#result_list a[href*='/{bad.pk}/change/']")
    expect(page.locator("body")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("body")).to_contain_text("ProviderError: invalid server name 'Bad_Name!'")

    # Fix the cause (the name the provider refused), then requeue from the changelist.
    page.goto(f"/admin/instances/instance/{bad.instance_id}/change/")
    page.fill("#id_name", "web-fixed")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert Instance.objects.get(pk=bad.instance_id).name == "web-fixed"
    page.goto("/admin/instances/instanceprovision/?state__exact=failed")
    page.check(f"#result_list input[value='{bad.pk}']")
    page.select_option("select[name=action]", "requeue_jobs")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("1 job requeued.")

    # The worker picks it up; the job's page says so once it has.
    page.goto(f"/admin/instances/instanceprovision/{bad.pk}/change/")
    deadline = time.monotonic() + 30
    while not page.get_by_text("Succeeded", exact=True).count():
        assert time.monotonic() < deadline, "the requeued job did not succeed within 30 s"
        page.wait_for_timeout(200)
        page.reload()
    assert InstanceProvision.objects.get(pk=bad.pk).state == JobState.SUCCEEDED

    page.goto("/admin/jobs/worker/dashboard/")
    assert shown_counts(page, PROVISIONS_ROW) == counted(InstanceProvision.objects, timezone.now())
    assert page.inner_text(f"{PROVISIONS_ROW} td.failed_last_hour") == "0"
