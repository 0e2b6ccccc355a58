"""The worker loop in-process: what it claims, in which order, and how it stops."""

import logging
import time
from datetime import timedelta

import pytest

from jobs import timesource
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import Effect, RecordingJob, UrgentJob

# The worker performs jobs on its own thread and connection, so test data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def performed_order() -> list[tuple[str, int]]:
    return list(Effect.objects.order_by("pk").values_list("job_model", "job_id"))


def test_burst_drains_every_runnable_job_once_and_returns():
    jobs = [RecordingJobFactory(enqueue=True) for _ in range(5)]
    assert WorkerLoop(burst=True).run() == 5
    assert sorted(job_id for _, job_id in performed_order()) == sorted(j.pk for j in jobs)
    assert set(RecordingJob.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}


def test_new_cancelled_and_future_jobs_are_not_claimed():
    RecordingJobFactory()
    RecordingJobFactory(enqueue=True).cancel()
    RecordingJobFactory(enqueue=True, enqueue__delay=timedelta(hours=1))
    assert WorkerLoop(burst=True).run() == 0
    assert not Effect.objects.exists()


def test_higher_priority_first_then_oldest_run_at():
    now = timesource.now()
    late = RecordingJobFactory(enqueue=True, enqueue__run_at=now - timedelta(seconds=1))
    early = RecordingJobFactory(enqueue=True, enqueue__run_at=now - timedelta(seconds=9))
    urgent = RecordingJobFactory(enqueue=True, enqueue__priority=50)
    WorkerLoop(burst=True).run()
    assert [job_id for _, job_id in performed_order()] == [urgent.pk, early.pk, late.pk]


def test_queues_are_served_in_order_of_precedence():
    low = RecordingJobFactory(enqueue=True, enqueue__queue="low")
    high = RecordingJobFactory(enqueue=True, enqueue__queue="high")
    ignored = RecordingJobFactory(enqueue=True, enqueue__queue="other")
    WorkerLoop(queues=["high", "low"], burst=True).run()
    assert [job_id for _, job_id in performed_order()] == [high.pk, low.pk]
    assert RecordingJob.objects.get(pk=ignored.pk).state == JobState.PENDING


def test_job_models_of_equal_priority_take_turns_within_a_queue():
    for _ in range(3):
        RecordingJobFactory(enqueue=True, enqueue__queue="shared", enqueue__priority=0)
        UrgentJobFactory(enqueue=True, enqueue__queue="shared", enqueue__priority=0)
    WorkerLoop(queues=["shared"], burst=True).run()
    models = [model for model, _ in performed_order()]
    assert models[0::2] == [models[0]] * 3
    assert models[1::2] == [models[1]] * 3
    assert models[0] != models[1]


def test_worker_serves_only_the_models_it_is_given():
    RecordingJobFactory(enqueue=True)
    urgent = UrgentJobFactory(enqueue=True)
    WorkerLoop(models=[UrgentJob], burst=True).run()
    assert performed_order() == [("testapp.UrgentJob", urgent.pk)]


def test_the_worker_logs_which_job_models_it_serves(caplog):
    with caplog.at_level(logging.INFO, logger="jobs.runtime.worker"):
        WorkerLoop(models=[UrgentJob], burst=True).run()
    assert "from 1 job model(s): testapp.UrgentJob" in caplog.text


def test_each_job_start_and_end_is_logged_with_its_duration(caplog):
    job = RecordingJobFactory(enqueue=True)
    failing = RecordingJobFactory(enqueue=True, fail=True)
    with caplog.at_level(logging.INFO, logger="jobs"):
        WorkerLoop(burst=True).run()
    assert f"testapp.RecordingJob#{job.pk} started (queue default, attempt 1 of 1)" in caplog.text
    assert f"testapp.RecordingJob#{job.pk} succeeded in 0." in caplog.text
    assert f"testapp.RecordingJob#{failing.pk} failed in 0." in caplog.text


def test_stop_ends_an_idle_worker_within_one_poll():
    worker = WorkerLoop(interval=0.2)
    thread = in_thread(worker)
    time.sleep(0.3)
    began = time.monotonic()
    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - began < 1


def test_idle_worker_picks_up_a_job_enqueued_later():
    worker = WorkerLoop(interval=0.05)
    thread = in_thread(worker)
    try:
        time.sleep(0.2)
        job = RecordingJobFactory(enqueue=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not Effect.objects.filter(job_id=job.pk).exists():
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(timeout=5)
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED
    assert worker.performed == 1


@pytest.mark.parametrize(
    ("behaviour", "error_type"),
    [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt"), ("out_of_memory", "MemoryError")],
)
def test_a_job_raising_a_fatal_exception_is_recorded_and_the_worker_goes_on(behaviour, error_type):
    fatal = RecordingJobFactory(enqueue=True, behaviour=behaviour)
    after = RecordingJobFactory(enqueue=True, enqueue__priority=-1)
    assert WorkerLoop(burst=True).run() == 2
    fatal.refresh_from_db()
    assert (fatal.state, fatal.error_type) == (JobState.FAILED, error_type)
    assert RecordingJob.objects.get(pk=after.pk).state == JobState.SUCCEEDED


def test_a_job_opening_its_own_transaction_and_enqueueing_follow_ups_commits_them_together():
    parent = RecordingJobFactory(enqueue=True, behaviour="chain")
    assert WorkerLoop(burst=True).run() == 3
    assert RecordingJob.objects.get(pk=parent.pk).state == JobState.SUCCEEDED
    assert RecordingJob.objects.filter(label_text=f"child of {parent.pk}").count() == 2
    assert set(RecordingJob.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}


def test_a_job_whose_row_is_deleted_while_it_runs_ends_without_error(caplog):
    job = RecordingJobFactory(enqueue=True, behaviour="delete_itself")
    assert WorkerLoop(burst=True).run() == 1
    assert not RecordingJob.objects.filter(pk=job.pk).exists()
    assert "the row moved on (now deleted)" in caplog.text
