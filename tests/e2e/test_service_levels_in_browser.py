"""The dashboard's service levels in headless Chromium: a real worker's latency probe keeps a
queue within its SLA; with the worker gone and a job left waiting, the row turns red."""

import signal
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from jobs.models import JobState, LatencyProbe
from tests.browser import log_in
from tests.conftest import start_manage, wait_for
from tests.e2e.conftest import PASSWORD, USERNAME
from tests.factories import InstanceProvisionFactory
from tests.settings_probe import JOBS_QUEUES

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROW = '#service-levels tr[data-row="average_slow"]'
SCHEDULE_ROW = '#schedules tr[data-row="probe:average_slow"]'


def test_a_queue_kept_by_its_probe_and_then_left_over_its_sla(page, operator, settings):
    settings.JOBS_QUEUES = JOBS_QUEUES  # the live server's view; the worker's is the module
    worker = start_manage("runjobs", DJANGO_SETTINGS_MODULE="tests.settings_probe")
    try:
        wait_for(lambda: LatencyProbe.objects.filter(state=JobState.SUCCEEDED).exists())
        log_in(page, USERNAME, PASSWORD)
        page.goto("/admin/jobs/worker/dashboard/")
        expect(page.locator(f"{ROW} td.status")).to_have_text("ok")
        assert page.inner_text(f"{ROW} td.sla") == "30s"
        assert page.inner_text(f"{ROW} td.latency").endswith("s")

        # The latest probe: a slot boundary may already have come since the first one.
        beat = LatencyProbe.objects.order_by("-pk").first()
        page.click(f"{SCHEDULE_ROW} td.last-run a")
        expect(page).to_have_url(f"/admin/jobs/latencyprobe/{beat.pk}/change/")
        expect(page.locator("body")).to_contain_text("Succeeded")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr

    InstanceProvisionFactory(enqueue=True, enqueue__run_at=timezone.now() - timedelta(minutes=1))
    page.goto("/admin/jobs/worker/dashboard/")
    expect(page.locator(f"{ROW} td.status")).to_have_text("over SLA")
    assert page.inner_text(f"{ROW} td.oldest-wait").startswith("1m")
