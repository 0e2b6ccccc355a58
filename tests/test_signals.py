"""Lifecycle signals fire in order, and failures reach `logging` with structured extras."""

import logging
from datetime import timedelta

import pytest
from django.dispatch import receiver

from jobs import execution, signals
from jobs.errors import JobTimeout
from jobs.models import JobState
from tests.conftest import NOON
from tests.factories import RecordingJobFactory
from tests.testapp.models import Boom, RecordingJob

pytestmark = pytest.mark.django_db
EVERY_SIGNAL = {
    name: getattr(signals, name)
    for name in (
        "job_enqueued",
        "job_started",
        "job_succeeded",
        "job_retried",
        "job_failed",
        "job_rescued",
    )
}


@pytest.fixture
def heard():
    """Every lifecycle signal sent during the test, as (signal name, job pk, state, extras)."""
    events = []
    listeners = {}
    for name, signal in EVERY_SIGNAL.items():

        def listen(sender, job, name=name, **kwargs):
            assert sender is type(job)
            kwargs.pop("signal")
            events.append((name, job.pk, job.state, kwargs))

        listeners[signal] = listen
        signal.connect(listen)
    yield events
    for signal, listen in listeners.items():
        signal.disconnect(listen)


def names(events) -> list[str]:
    return [event[0] for event in events]


def test_a_job_that_fails_then_succeeds_signals_each_step_in_order(heard, frozen):
    job = RecordingJobFactory(fail=True, max_attempts=2, enqueue=True)
    job.run()
    job.fail = False
    job.save()
    job.run()
    assert names(heard) == [
        "job_enqueued",
        "job_started",
        "job_retried",
        "job_started",
        "job_succeeded",
    ]
    enqueued, started, retried, _, succeeded = heard
    assert enqueued[2] == JobState.PENDING
    assert started[2] == JobState.RUNNING
    assert retried[2] == JobState.PENDING
    assert isinstance(retried[3]["exception"], Boom)
    assert retried[3]["duration"] >= 0
    assert succeeded[2] == JobState.SUCCEEDED
    assert set(succeeded[3]) == {"duration"}
    assert {event[1] for event in heard} == {job.pk}


def test_a_job_out_of_attempts_signals_failed_with_its_exception(heard):
    RecordingJobFactory(fail=True, enqueue=True).run()
    assert names(heard) == ["job_enqueued", "job_started", "job_failed"]
    assert isinstance(heard[-1][3]["exception"], Boom)
    assert heard[-1][2] == JobState.FAILED


def test_bulk_enqueue_signals_every_row(heard):
    jobs = RecordingJob.objects.bulk_enqueue(RecordingJob(label_text=str(n)) for n in range(3))
    assert [(name, pk) for name, pk, *_ in heard] == [("job_enqueued", job.pk) for job in jobs]


def test_a_rescued_job_is_signalled_once_with_where_it_went(heard, frozen):
    job = RecordingJobFactory(max_attempts=2, enqueue=True)
    RecordingJob.objects.filter(pk=job.pk).update(
        state=JobState.RUNNING,
        attempts=1,
        claimed_by="gone:1:T",
        lease_expires_at=NOON - timedelta(seconds=1),
    )
    heard.clear()
    assert RecordingJob.objects.rescue() == 1
    assert RecordingJob.objects.rescue() == 0
    assert [(name, state) for name, _, state, _ in heard] == [("job_rescued", JobState.PENDING)]


def test_a_receiver_that_raises_is_logged_and_breaks_nothing(caplog):
    @receiver(signals.job_started)
    def broken(sender, job, **kwargs):
        raise RuntimeError("integration down")

    try:
        with caplog.at_level(logging.ERROR, logger="jobs.signals"):
            job = RecordingJobFactory(enqueue=True).run()
    finally:
        signals.job_started.disconnect(broken)
    assert job.state == JobState.SUCCEEDED
    assert "signal receiver" in caplog.text
    assert "RuntimeError: integration down" in caplog.text


def test_a_final_failure_is_an_error_record_with_the_exception_and_extras(caplog):
    with caplog.at_level(logging.WARNING, logger="jobs"):
        job = RecordingJobFactory(fail=True, queue="reports", enqueue=True).run()
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.name == "jobs.execution"
    assert record.exc_info[0] is Boom
    assert record.job_model == "testapp.RecordingJob"
    assert record.job_id == job.pk
    assert record.job_attempt == 1
    assert record.job_queue == "reports"
    assert record.job_worker == job.claimed_by != ""
    assert record.job_error_type == "tests.testapp.models.Boom"


def test_a_retry_is_a_warning_record_with_the_same_extras(caplog):
    with caplog.at_level(logging.INFO, logger="jobs"):
        job = RecordingJobFactory(fail=True, max_attempts=3, enqueue=True).run()
    failures = [r for r in caplog.records if getattr(r, "job_id", None) == job.pk]
    (record,) = failures
    assert record.levelno == logging.WARNING
    assert "retry at" in record.getMessage()
    assert record.exc_info is None
    assert (record.job_attempt, record.job_queue) == (1, "default")


def test_a_timeout_is_reported_as_a_failure_with_a_job_timeout(heard, caplog):
    job = RecordingJobFactory(timeout=1, enqueue=True)
    execution.claim_for_run(job)
    with caplog.at_level(logging.ERROR, logger="jobs"):
        execution.time_out(job, began=0.0, stack="  File 'x', line 1")
    assert names(heard)[-1] == "job_failed"
    assert isinstance(heard[-1][3]["exception"], JobTimeout)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.job_id == job.pk
