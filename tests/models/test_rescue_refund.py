"""Rescue and the attempts it counts: a worker lost with several jobs in hand gives each of
them its attempt back once (a neighbour may have crashed it), every rescue is kept in the
job's error history, and a later success clears the error from the row."""

from datetime import timedelta

import pytest

from jobs import execution, timesource
from jobs.db import engine_for
from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.models.queryset import WORKER_LOST
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=60)


def claim_as(worker: str, count: int = 1) -> list[RecordingJob]:
    return engine_for("default").claim(
        RecordingJob, queue=None, worker=worker, now=timesource.now(), limit=count
    )


def lose_them(frozen) -> int:
    """Let every lease run out, then rescue."""
    frozen.now += LEASE + timedelta(seconds=1)
    return RecordingJob.objects.rescue()


def rows() -> list[RecordingJob]:
    return list(RecordingJob.objects.order_by("pk"))


def test_a_worker_lost_with_one_job_in_hand_counts_its_attempt(frozen):
    RecordingJobFactory(enqueue=True, max_attempts=1)
    claim_as("host:1")
    assert lose_them(frozen) == 1
    (job,) = rows()
    assert (job.state, job.attempts, job.error_type) == (JobState.FAILED, 1, WORKER_LOST)
    assert [entry["type"] for entry in job.error_history] == [WORKER_LOST]
    assert "not counted" not in job.error_message


def test_jobs_lost_with_neighbours_get_their_attempt_back_once(frozen):
    RecordingJobFactory.create_batch(3, enqueue=True, max_attempts=1)
    claim_as("host:1", 3)
    assert lose_them(frozen) == 3
    for job in rows():
        assert (job.state, job.attempts, job.max_attempts, job.error_type) == (
            JobState.PENDING,
            1,
            2,
            WORKER_LOST,
        )
        assert "not counted: its worker was running other jobs too" in job.error_message
        (entry,) = job.error_history
        assert (entry["type"], entry["attempt"], entry["worker"]) == (WORKER_LOST, 1, "host:1")
        assert entry["message"] == job.error_message


def test_a_job_lost_a_second_time_counts_it_so_a_killer_ends_failed_after_max_attempts_plus_one(
    frozen,
):
    RecordingJobFactory.create_batch(2, enqueue=True, max_attempts=1)
    claim_as("host:1", 2)
    lose_them(frozen)  # both refunded
    claim_as("host:2", 2)  # the same two, together again, and lost again
    assert lose_them(frozen) == 2
    for job in rows():
        assert (job.state, job.attempts, job.error_type) == (JobState.FAILED, 2, WORKER_LOST)
        assert [entry["type"] for entry in job.error_history] == [WORKER_LOST, WORKER_LOST]


def test_neighbours_in_other_tables_count_through_the_worker_row(frozen):
    """One orphan here, but its worker's row listed two jobs in flight (the other of another
    model): a neighbour may have crashed it."""
    RecordingJobFactory(enqueue=True, max_attempts=1)
    WorkerRow.register("host:7", queues=None, threads=2, supervisor=None)
    (job,) = claim_as("host:7")
    WorkerRow.objects.filter(name="host:7").update(
        jobs_in_flight=[job.label, "testapp.UrgentJob#99"]
    )
    lose_them(frozen)
    (job,) = rows()
    assert (job.state, job.attempts, job.max_attempts) == (JobState.PENDING, 1, 2)


def test_a_refund_never_repeats_an_attempt_number_so_a_stale_attempt_stays_fenced(frozen):
    """The lost worker may be alive behind a partition and win the job back: its new
    attempt must not share (attempt, claimant) with the stale one still running there."""
    RecordingJobFactory.create_batch(2, enqueue=True, max_attempts=1)
    stale, _neighbour = claim_as("host:1", 2)
    lose_them(frozen)  # both refunded
    fresh = next(job for job in claim_as("host:1", 2) if job.pk == stale.pk)
    assert fresh._claim() != stale._claim()
    stale.fail = True
    late = execution.attempt(stale)  # its lease ran out: not even started
    assert execution.record_each([late], using="default") == [False]
    assert RecordingJob.objects.get(pk=stale.pk).attempts == 2


def test_a_success_after_a_rescue_clears_the_error_and_keeps_the_rescue_in_the_history(frozen):
    RecordingJobFactory(enqueue=True, max_attempts=2)
    claim_as("host:1")
    lose_them(frozen)
    (job,) = rows()
    job.run()
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    assert (job.error_type, job.error_message, job.error_traceback) == ("", "", "")
    assert [entry["type"] for entry in job.error_history] == [WORKER_LOST]


def test_a_success_after_a_failed_attempt_clears_the_error_and_keeps_it_in_the_history():
    job = RecordingJobFactory(enqueue=True, fail=True, max_attempts=2).run()
    assert job.error_type == "tests.testapp.models.Boom"
    RecordingJob.objects.filter(pk=job.pk).update(fail=False, run_at=timesource.now())
    job = RecordingJob.objects.get(pk=job.pk).run()
    job.refresh_from_db()
    assert (job.state, job.error_type, job.error_message) == (JobState.SUCCEEDED, "", "")
    assert [entry["type"] for entry in job.error_history] == ["tests.testapp.models.Boom"]


def test_a_first_success_writes_no_error_fields(frozen):
    """A job that never failed leaves its error columns alone: the common success's UPDATE
    stays as small as it was."""
    job = RecordingJobFactory(enqueue=True)
    execution.claim_for_run(job)
    assert set(execution.attempt(job).changes) == {"finished_at", "log"}
