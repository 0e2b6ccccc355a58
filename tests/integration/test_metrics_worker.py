"""After a real `runjobs` process, the metrics endpoint's numbers are the database's."""

from collections import Counter

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import timesource
from jobs.db import engine_for
from jobs.models import JobState
from jobs.models.discovery import job_models
from jobs.models.queryset import WORKER_LOST
from tests.conftest import manage
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import Effect, RecordingJob, UrgentJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def scraped(client) -> dict[tuple[str, str, str], float]:
    """(sample name, queue, model) -> value, for the samples labelled by queue and model,
    histogram buckets left out (their +Inf is the count)."""
    response = client.get(reverse("jobs-metrics"))
    assert response.status_code == 200
    return {
        (sample.name, sample.labels["queue"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if "model" in sample.labels and "le" not in sample.labels
    }


def in_database(now) -> dict[tuple[str, str, str], float]:
    """The same numbers counted from the rows: states, error histories, perform() calls."""
    performed = Counter(Effect.objects.values_list("job_model", "job_id"))
    numbers: Counter = Counter()
    for model in job_models():
        label = model._meta.label
        for job in model.objects.all():
            series = job.queue, label
            numbers["jobs_succeeded_total", *series] += job.state == JobState.SUCCEEDED
            numbers["jobs_failed_total", *series] += (
                job.state == JobState.FAILED and job.error_type != WORKER_LOST
            )
            # Every failed attempt left an entry, and so did every rescue; the last failure of
            # a job failed by its own error was no retry.
            lost = sum(entry["type"] == WORKER_LOST for entry in job.error_history)
            numbers["jobs_retried_total", *series] += (
                len(job.error_history)
                - lost
                - (job.state == JobState.FAILED and job.error_type != WORKER_LOST)
            )
            numbers["jobs_rescued_total", *series] += lost
            for histogram in ("jobs_run_duration_seconds", "jobs_wait_seconds"):
                numbers[f"{histogram}_count", *series] += performed[label, job.pk]
            numbers["jobs_pending", *series] += job.state == JobState.PENDING and job.run_at <= now
            numbers["jobs_scheduled", *series] += job.state == JobState.PENDING and job.run_at > now
            numbers["jobs_running", *series] += job.state == JobState.RUNNING
            if job.state == JobState.PENDING and job.run_at <= now:
                waited = (now - job.run_at).total_seconds()
                oldest = "jobs_oldest_pending_age_seconds", *series
                numbers[oldest] = max(numbers[oldest], waited)
    return numbers


def test_the_metrics_equal_the_database_after_a_worker_run(client, monkeypatch):
    for _ in range(3):
        RecordingJobFactory(enqueue=True)
    for _ in range(2):
        RecordingJobFactory(enqueue=True, fail=True)
    RecordingJobFactory(enqueue=True, fail=True, max_attempts=3)  # retried later
    RecordingJobFactory(enqueue=True, behaviour="forbidden", max_attempts=3)  # discarded
    RecordingJobFactory(enqueue=True, behaviour="value_error", enqueue__queue="low")
    RecordingJobFactory(enqueue=True, enqueue__queue="low", enqueue__delay=3600)
    # A job whose worker vanished: its lease has run out, so the worker rescues it first.
    UrgentJobFactory(enqueue=True, max_attempts=2)
    (orphan,) = engine_for("default").claim(
        UrgentJob, queue=None, worker="gone:1", now=timezone.now()
    )
    UrgentJob.objects.filter(pk=orphan.pk).update(lease_expires_at=timezone.now())
    for _ in range(2):
        UrgentJobFactory(enqueue=True)

    result = manage("runjobs", "--burst")
    assert result.returncode == 0, result.stderr

    scraped_at = timezone.now()  # one moment for the scrape and the count alike
    monkeypatch.setattr(timesource, "now", lambda: scraped_at)
    for _ in range(2):
        RecordingJobFactory(enqueue=True)
    # One job running in a worker that is still at it (this process claims it).
    claimed = engine_for("default").claim(RecordingJob, queue=None, worker="w:1", now=scraped_at)
    assert len(claimed) == 1

    metrics = scraped(client)
    database = in_database(scraped_at)
    for key, value in metrics.items():
        if not key[0].endswith("_sum"):  # durations the rows do not keep
            assert value == database[key], key
    assert {key for key, value in database.items() if value} <= set(metrics)
    totals = Counter()
    for (name, _, _), value in metrics.items():
        totals[name] += value
    assert totals["jobs_succeeded_total"] == 6
    assert totals["jobs_failed_total"] == 4
    assert totals["jobs_retried_total"] == 1
    assert totals["jobs_rescued_total"] == 1
    assert totals["jobs_run_duration_seconds_count"] == Effect.objects.count() == 11
    assert totals["jobs_wait_seconds_count"] == 11
    # The retried job is scheduled or, if its backoff is over, pending again.
    assert totals["jobs_pending"] + totals["jobs_scheduled"] == 3
    assert totals["jobs_running"] == 1
