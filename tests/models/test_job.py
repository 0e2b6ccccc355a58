"""The Job lifecycle through its public verbs, on whichever database the suite runs on."""

from datetime import datetime, timedelta

import pytest
from django.db import transaction

from jobs import execution
from jobs.errors import JobNotRunnable, JobStateError
from jobs.execution.endings import ERROR_MESSAGE_LIMIT, TRACEBACK_LIMIT
from jobs.identity import process_identity
from jobs.models import JobState
from tests.conftest import NOON
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import Effect, HugeErrorJob, RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db


def test_created_job_is_new_and_not_queued():
    job = RecordingJobFactory()
    assert job.state == JobState.NEW
    assert job.requested_at is None
    assert not RecordingJob.objects.runnable().exists()


def test_enqueue_stamps_requested_at_and_makes_the_job_runnable(frozen):
    job = RecordingJobFactory().enqueue()
    job.refresh_from_db()
    assert (job.state, job.requested_at, job.run_at) == (JobState.PENDING, NOON, NOON)
    assert list(RecordingJob.objects.runnable()) == [job]


def test_create_then_enqueue_reads_naturally_and_returns_the_job():
    job = RecordingJob.objects.create(label_text="x").enqueue()
    assert isinstance(job, RecordingJob)
    assert job.state == JobState.PENDING


def test_enqueue_inserts_an_unsaved_job():
    job = RecordingJob(label_text="fresh").enqueue()
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.PENDING


def test_lifecycle_to_success_records_timestamps_and_worker(frozen):
    job = RecordingJobFactory().enqueue()
    frozen.now = NOON + timedelta(seconds=5)
    job.run()
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert job.requested_at == NOON
    assert job.started_at == NOON + timedelta(seconds=5)
    assert job.finished_at == NOON + timedelta(seconds=5)
    assert job.attempts == 1
    assert job.claimed_by == process_identity()
    assert job.error_type == ""
    assert Effect.objects.filter(job_id=job.pk).count() == 1


def test_delay_and_run_at_set_when_the_job_may_start(frozen):
    delayed = RecordingJobFactory().enqueue(delay=timedelta(minutes=5))
    by_seconds = RecordingJobFactory().enqueue(delay=30)
    at = RecordingJobFactory().enqueue(run_at=NOON + timedelta(hours=1))
    assert delayed.run_at == NOON + timedelta(minutes=5)
    assert by_seconds.run_at == NOON + timedelta(seconds=30)
    assert at.run_at == NOON + timedelta(hours=1)
    assert not RecordingJob.objects.runnable().exists()
    assert RecordingJob.objects.runnable(now=NOON + timedelta(minutes=5)).count() == 2


def test_class_defaults_apply_to_new_rows():
    job = UrgentJobFactory()
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", 10, 3)
    assert RecordingJobFactory().max_attempts == 1


def test_enqueue_overrides_queue_and_priority_for_one_row():
    job = UrgentJobFactory().enqueue(queue="slow", priority=-5)
    job.refresh_from_db()
    assert (job.queue, job.priority) == ("slow", -5)
    assert UrgentJob._meta.get_field("queue").default == "urgent"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": 5, "run_at": NOON}, "not both"),
        ({"delay": -1}, "must not be negative"),
        ({"delay": "soon"}, "timedelta or a number of seconds"),
        ({"run_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"priority": 1000}, "out of range"),
        ({"priority": "high"}, "must be an integer"),
        ({"queue": ""}, "queue name '' is invalid"),
        ({"queue": "has space"}, "is invalid"),
    ],
)
def test_enqueue_rejects_bad_arguments_and_leaves_the_row_new(kwargs, message):
    job = RecordingJobFactory()
    with pytest.raises(ValueError, match=message):
        job.enqueue(**kwargs)
    job.refresh_from_db()
    assert job.state == JobState.NEW


def test_enqueue_twice_is_refused_with_a_clear_error():
    job = RecordingJobFactory(enqueue=True)
    with pytest.raises(JobStateError, match="is pending, and enqueue\\(\\) takes a new row"):
        RecordingJob.objects.get(pk=job.pk).enqueue()


def enqueue_then_fail(job: RecordingJob) -> None:
    """A view that enqueues, then fails before its transaction commits."""
    with transaction.atomic():
        job.enqueue()
        raise RuntimeError("the view failed after enqueueing")


def test_enqueue_in_a_transaction_that_rolls_back_leaves_nothing_runnable():
    with pytest.raises(RuntimeError):
        enqueue_then_fail(RecordingJob(label_text="never"))
    assert not RecordingJob.objects.exists()


def test_enqueue_of_an_existing_row_rolls_back_with_the_transaction():
    job = RecordingJobFactory()
    with pytest.raises(RuntimeError):
        enqueue_then_fail(job)
    job.refresh_from_db()
    assert job.state == JobState.NEW
    assert not RecordingJob.objects.runnable().exists()


def test_run_twice_in_sequence_performs_once():
    job = RecordingJobFactory(enqueue=True)
    job.run()
    with pytest.raises(JobNotRunnable, match="is succeeded"):
        RecordingJob.objects.get(pk=job.pk).run()
    with pytest.raises(JobNotRunnable):
        job.run()
    assert Effect.objects.filter(job_id=job.pk).count() == 1


def test_run_refuses_a_deleted_row():
    job = RecordingJobFactory(enqueue=True)
    RecordingJob.objects.filter(pk=job.pk).delete()
    with pytest.raises(JobNotRunnable, match="does not exist"):
        job.run()


def test_run_of_a_new_row_stamps_requested_at(frozen):
    job = RecordingJobFactory().run()
    assert job.state == JobState.SUCCEEDED
    assert job.requested_at == NOON


def test_failing_perform_records_the_error_and_fails_when_attempts_are_spent(frozen):
    job = RecordingJobFactory(fail=True, label_text="lamp", enqueue=True)
    job.run()
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.finished_at == NOON
    assert job.attempts == 1
    assert job.error_type == "tests.testapp.models.Boom"
    assert job.error_message == "boom in lamp"
    assert "Traceback (most recent call last)" in job.error_traceback
    assert 'raise Boom(f"boom in' in job.error_traceback


def test_failure_with_attempts_left_is_retried_later_with_backoff(frozen):
    job = RecordingJobFactory(fail=True, max_attempts=3, enqueue=True)
    job.run()
    job.refresh_from_db()
    assert job.state == JobState.PENDING
    assert job.error_type.endswith("Boom")
    assert NOON + timedelta(seconds=5) <= job.run_at <= NOON + timedelta(seconds=10)
    assert not RecordingJob.objects.runnable().exists()
    frozen.now = second_try = job.run_at
    job.run()
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.PENDING, 2)
    assert second_try + timedelta(seconds=10) <= job.run_at <= second_try + timedelta(seconds=20)


def test_retry_delay_grows_exponentially_and_is_capped():
    job = RecordingJob()
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (30, 3600)]:
        delay = job.retry_delay(attempt).total_seconds()
        assert ceiling / 2 <= delay <= ceiling


def test_traceback_is_bounded_keeping_its_end():
    job = HugeErrorJob.objects.create()
    job.run()
    job.refresh_from_db()
    assert len(job.error_traceback) == TRACEBACK_LIMIT
    assert job.error_traceback.startswith("[")
    assert job.error_traceback.rstrip().endswith("x")
    assert len(job.error_message) == ERROR_MESSAGE_LIMIT
    assert job.error_message.startswith("xxx")
    assert job.error_message.endswith("characters cut]")


def test_save_never_writes_lifecycle_fields_from_a_stale_instance():
    job = RecordingJobFactory(enqueue=True)
    stale = RecordingJob.objects.get(pk=job.pk)
    job.run()
    stale.label_text = "renamed"
    stale.save()
    fresh = RecordingJob.objects.get(pk=job.pk)
    assert (fresh.state, fresh.label_text) == (JobState.SUCCEEDED, "renamed")


def test_save_refuses_lifecycle_fields_and_non_new_inserts():
    job = RecordingJobFactory()
    job.state = JobState.SUCCEEDED
    with pytest.raises(JobStateError, match="lifecycle fields \\(state\\)"):
        job.save(update_fields=["state"])
    with pytest.raises(JobStateError, match="created in state 'new'"):
        RecordingJob.objects.create(state=JobState.RUNNING)
    assert RecordingJob.objects.filter(state=JobState.RUNNING).count() == 0


def test_queryset_verbs_select_by_state():
    new = RecordingJobFactory()
    pending = RecordingJobFactory(enqueue=True)
    done = RecordingJobFactory(enqueue=True).run()
    failed = RecordingJobFactory(fail=True, enqueue=True).run()
    cancelled = RecordingJobFactory(enqueue=True).cancel()
    assert set(RecordingJob.objects.pending()) == {pending}
    assert set(RecordingJob.objects.succeeded()) == {done}
    assert set(RecordingJob.objects.failed()) == {failed}
    assert set(RecordingJob.objects.cancelled()) == {cancelled}
    assert set(RecordingJob.objects.filter(state=JobState.NEW)) == {new}


def test_requeue_moves_only_failed_and_cancelled_rows_with_fresh_attempts(frozen):
    failed = RecordingJobFactory(fail=True, enqueue=True).run()
    cancelled = RecordingJobFactory(enqueue=True).cancel()
    done = RecordingJobFactory(enqueue=True).run()
    frozen.now = NOON + timedelta(hours=1)
    assert RecordingJob.objects.requeue() == 2
    failed.refresh_from_db()
    assert (failed.state, failed.attempts, failed.run_at) == (
        JobState.PENDING,
        0,
        NOON + timedelta(hours=1),
    )
    assert failed.finished_at is None
    assert RecordingJob.objects.get(pk=cancelled.pk).state == JobState.PENDING
    assert RecordingJob.objects.get(pk=done.pk).state == JobState.SUCCEEDED


def test_instance_requeue_and_cancel_refuse_rows_they_do_not_apply_to():
    done = RecordingJobFactory(enqueue=True).run()
    with pytest.raises(JobStateError, match="is succeeded and cannot be requeued"):
        done.requeue()
    with pytest.raises(JobStateError, match="cannot be cancelled"):
        done.cancel()
    failed = RecordingJobFactory(fail=True, enqueue=True).run()
    assert failed.requeue().state == JobState.PENDING


def test_cancel_leaves_running_and_finished_rows_alone(frozen):
    pending = RecordingJobFactory(enqueue=True)
    done = RecordingJobFactory(enqueue=True).run()
    assert RecordingJob.objects.cancel() == 1
    pending.refresh_from_db()
    assert (pending.state, pending.finished_at) == (JobState.CANCELLED, NOON)
    assert RecordingJob.objects.get(pk=done.pk).state == JobState.SUCCEEDED
    with pytest.raises(JobNotRunnable, match="is cancelled"):
        pending.run()


def test_finish_is_not_recorded_when_the_claim_was_lost(caplog):
    job = RecordingJobFactory(enqueue=True)
    execution.claim_for_run(job)
    RecordingJob.objects.filter(pk=job.pk).update(claimed_by="someone-else:1:T")
    execution.execute(job)
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.RUNNING
    assert "outcome not recorded" in caplog.text
