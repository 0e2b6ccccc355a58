"""Stopping a running job that cooperates, and bringing a scheduled job forward."""

from datetime import timedelta

import pytest

from jobs import execution
from jobs.errors import JobStateError
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, wait_for
from tests.factories import RecordingJobFactory, StepJobFactory
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_running_job_asked_to_stop_ends_cancelled_at_its_next_check():
    job = StepJobFactory(steps=200, step_seconds=0.05, enqueue=True)
    thread = in_thread(WorkerLoop(burst=True))
    wait_for(lambda: (StepJob.objects.get(pk=job.pk).progress_done or 0) >= 2, timeout=10)
    assert StepJob.objects.get(pk=job.pk).cancel() is not None
    thread.join(timeout=10)
    row = StepJob.objects.get(pk=job.pk)
    assert (row.state, row.error_type) == (JobState.CANCELLED, "")
    assert row.progress_done < 200
    assert "stopping before step" in row.log
    assert row.finished_at >= row.cancel_requested_at


def test_cancelling_a_running_job_only_asks_until_it_checks():
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    assert StepJob.objects.filter(pk=job.pk).cancel() == 1
    row = StepJob.objects.get(pk=job.pk)
    assert (row.state, row.cancel_requested_at is not None) == (JobState.RUNNING, True)
    assert StepJob.objects.filter(pk=job.pk).cancel() == 0  # asked once is asked


def test_a_finished_job_cannot_be_cancelled():
    job = StepJobFactory(enqueue=True).run()
    with pytest.raises(JobStateError, match="is succeeded and cannot be cancelled"):
        job.cancel()


def test_cancellation_requested_reads_the_row_at_most_once_a_second(django_assert_num_queries):
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    with django_assert_num_queries(1):
        assert not any(job.cancellation_requested() for _ in range(100))


def test_a_job_asked_to_stop_whose_worker_died_is_rescued_as_cancelled(frozen):
    job = StepJobFactory(max_attempts=3, enqueue=True)
    execution.claim_for_run(job)
    StepJob.objects.filter(pk=job.pk).cancel()
    frozen.now += timedelta(hours=1)
    assert StepJob.objects.rescue() == 1
    assert StepJob.objects.get(pk=job.pk).state == JobState.CANCELLED


def test_a_job_asked_to_stop_is_cancelled_not_handed_back_at_shutdown():
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    StepJob.objects.filter(pk=job.pk).cancel()
    assert execution.hand_back(job)
    assert StepJob.objects.get(pk=job.pk).state == JobState.CANCELLED


def test_requeue_forgets_an_old_cancel_request():
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    StepJob.objects.filter(pk=job.pk).cancel()
    execution.hand_back(job)
    StepJob.objects.filter(pk=job.pk).requeue()
    assert StepJob.objects.get(pk=job.pk).cancel_requested_at is None


def test_retry_now_makes_scheduled_jobs_runnable_and_leaves_others(frozen):
    later = RecordingJobFactory(enqueue=True, enqueue__delay=timedelta(hours=2))
    due = RecordingJobFactory(enqueue=True)
    new = RecordingJobFactory()
    assert type(later).objects.retry_now() == 1
    assert set(type(later).objects.runnable().values_list("pk", flat=True)) == {later.pk, due.pk}
    assert type(new).objects.get(pk=new.pk).state == JobState.NEW


def test_secrets_never_reach_any_log_handler(caplog):
    job = StepJobFactory(steps=2, fail_at=2, enqueue=True)
    with caplog.at_level("INFO"):
        job.run()
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "with token ********" in text
    assert job.api_token not in text
