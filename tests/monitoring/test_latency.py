"""A probed queue's live latency: the last probe's wait, or the one still waiting."""

from datetime import timedelta

import pytest
from django.test import override_settings

from jobs.contrib.tasks.api import IMMEDIATE_BACKEND
from jobs.contrib.tasks.models import TaskJob
from jobs.models import JobState, LatencyProbe
from jobs.models.discovery import served_models
from jobs.monitoring.latency import STALE_AFTER, queue_latency
from tests.conftest import NOON


def beat(run_at, *, started_after: float | None = None) -> LatencyProbe:
    job = LatencyProbe(queue="urgent").enqueue(run_at=run_at)
    if started_after is not None:
        LatencyProbe.objects.filter(pk=job.pk).update(
            state=JobState.SUCCEEDED, started_at=run_at + timedelta(seconds=started_after)
        )
    return job


@pytest.mark.django_db
def test_latency_is_the_last_probes_wait():
    beat(NOON - timedelta(minutes=2), started_after=30)
    beat(NOON - timedelta(minutes=1), started_after=4)
    latency = queue_latency("urgent", NOON)
    assert latency.latency == timedelta(seconds=4)
    assert not latency.stale(NOON)


@pytest.mark.django_db
def test_a_probe_still_waiting_counts_for_as_long_as_it_has_waited():
    beat(NOON - timedelta(minutes=5), started_after=1)
    beat(NOON - timedelta(minutes=4))
    beat(NOON - timedelta(minutes=3))
    latency = queue_latency("urgent", NOON)
    assert latency.latency == timedelta(minutes=4)
    assert latency.stale(NOON)
    assert not latency.stale(NOON - timedelta(minutes=5) + STALE_AFTER)


@pytest.mark.django_db
def test_a_first_probe_waiting_a_few_seconds_is_not_stale():
    beat(NOON - timedelta(seconds=3))
    latency = queue_latency("urgent", NOON)
    assert latency.latency == timedelta(seconds=3)
    assert not latency.stale(NOON)
    assert latency.stale(NOON + STALE_AFTER)


@pytest.mark.django_db
def test_a_queue_without_probes_has_no_latency_and_is_stale():
    latency = queue_latency("urgent", NOON)
    assert latency.latency is None
    assert latency.stale(NOON)


def test_workers_claim_probes_only_where_a_queue_asks_for_them():
    assert LatencyProbe not in served_models()
    with override_settings(JOBS_QUEUES={"urgent": {"probe": True}}):
        assert LatencyProbe in served_models()


def test_workers_claim_tasks_only_where_a_tasks_backend_stores_them():
    assert TaskJob in served_models()  # the example's settings use the backend
    immediate = {"default": {"BACKEND": IMMEDIATE_BACKEND}}
    with override_settings(TASKS=immediate):
        assert TaskJob not in served_models()
