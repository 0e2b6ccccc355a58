"""The dashboard's service levels (SLA beside the live wait) and schedules (last, next run)."""

from datetime import timedelta

import pytest
from django.test import override_settings

from jobs.conf.queues import DEFAULT_SLA
from jobs.cron.clock import Clock
from jobs.cron.schedules import configured_schedules
from jobs.models import JobState, LatencyProbe
from tests.admin.test_dashboard import DASHBOARD, tables
from tests.conftest import NOON
from tests.factories import RecordingJobFactory

pytestmark = pytest.mark.django_db

QUEUES = {"urgent": {"sla": "30s", "probe": True}, "default": {"sla": "10m"}}
SCHEDULE = {
    "nightly": {"job": "testapp.RecordingJob", "cron": "0 3 * * *", "timezone": "UTC"},
    "minutely": {"job": "testapp.RecordingJob", "every": "1m", "missed": "skip"},
}


@override_settings(JOBS_QUEUES=QUEUES, JOBS_SCHEDULE=SCHEDULE)
def test_schedules_show_their_last_and_next_run_with_a_link_to_the_job(admin_client, frozen):
    (job, beat) = Clock(configured_schedules()).tick(NOON)
    frozen.now = NOON + timedelta(seconds=20)
    rows = tables(admin_client).rows
    assert rows["nightly"]["last-run"]["text"] == "never"
    assert rows["nightly"]["next-run"]["text"] == "2026-11-23 03:00:00 UTC"
    assert rows["minutely"]["last-run"]["text"].startswith("2026-11-22 12:00:00 UTC")
    assert "href" not in rows["minutely"]["last-run"]  # RecordingJob has no admin here
    assert rows["minutely"]["next-run"]["text"] == "2026-11-22 12:01:00 UTC"
    assert rows["probe:urgent"]["last-run"]["text"].startswith("2026-11-22 12:00:00 UTC")
    assert rows["probe:urgent"]["last-run"]["href"].endswith(f"/latencyprobe/{beat.pk}/change/")
    assert f"testapp.RecordingJob#{job.pk}" in rows["minutely"]["last-run"]["text"]


@override_settings(JOBS_QUEUES=QUEUES)
def test_a_queue_over_its_sla_is_flagged_beside_its_wait(admin_client, frozen):
    RecordingJobFactory(queue="default", enqueue=True)
    LatencyProbe(queue="urgent").enqueue()
    frozen.now = NOON + timedelta(minutes=2)
    rows = tables(admin_client).rows
    assert rows["default"]["sla"]["text"] == "10m"
    assert rows["default"]["oldest-wait"]["text"] == "2m"
    assert rows["default"]["status"]["text"] == "ok"
    assert rows["urgent"]["latency"]["text"] == "2m"
    assert "over SLA" in rows["urgent"]["status"]["text"]
    LatencyProbe.objects.update(state=JobState.SUCCEEDED, started_at=NOON + timedelta(seconds=3))
    frozen.now = NOON + timedelta(minutes=2, seconds=10)
    rows = tables(admin_client).rows
    assert rows["urgent"]["latency"]["text"] == "3s"
    assert rows["urgent"]["status"]["text"] == "ok"


def test_a_queue_jobs_queues_does_not_name_is_shown_against_the_default_sla(admin_client, frozen):
    RecordingJobFactory(queue="eu", enqueue=True)
    frozen.now = NOON + DEFAULT_SLA + timedelta(seconds=1)
    rows = tables(admin_client).rows
    assert rows["eu"]["sla"]["text"] == "10m (default)"
    assert rows["eu"]["oldest-wait"]["text"] == "10m1s"
    assert "over SLA" in rows["eu"]["status"]["text"]
    # a job model's default queue is watched before any job is put on it
    assert rows["urgent"]["sla"]["text"] == "10m (default)"
    assert rows["urgent"]["status"]["text"] == "ok"


@override_settings(JOBS_SCHEDULE={"broken": {"job": "testapp.RecordingJob", "cron": "nope"}})
def test_broken_settings_are_shown_not_raised(admin_client):
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    assert b"Schedules and service levels cannot be shown" in response.content
    assert b"is &#x27;nope&#x27;" in response.content
