"""Leases and rescue: a job whose worker stops renewing its lease is taken back, once."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from jobs import execution, timesource
from jobs.db import engine_for
from jobs.lease import LeaseKeeper
from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.models.queryset import WORKER_LOST
from jobs.runtime.housekeeping import DEAD_WORKER_RETENTION
from jobs.runtime.worker import WorkerLoop
from tests.conftest import NOON, in_thread, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=60)


def claim_as(worker: str) -> RecordingJob:
    [job] = engine_for("default").claim(
        RecordingJob, queue=None, worker=worker, now=timesource.now()
    )
    return job


def rescue() -> int:
    return RecordingJob.objects.rescue()


def test_a_claim_takes_a_lease_of_jobs_lease_seconds(frozen):
    RecordingJobFactory(enqueue=True)
    assert claim_as("a:1:T").lease_expires_at == NOON + LEASE


def test_run_takes_a_lease_too(frozen, settings):
    settings.JOBS_LEASE_SECONDS = 30
    job = RecordingJobFactory(enqueue=True)
    execution.claim_for_run(job)
    assert RecordingJob.objects.get(pk=job.pk).lease_expires_at == NOON + timedelta(seconds=30)


def test_a_live_lease_is_not_rescued(frozen):
    RecordingJobFactory(enqueue=True)
    claim_as("a:1:T")
    frozen.now = NOON + LEASE
    assert rescue() == 0
    assert RecordingJob.objects.get().state == JobState.RUNNING


def test_an_expired_lease_with_attempts_left_goes_back_to_pending_with_the_attempt_counted(frozen):
    RecordingJobFactory(enqueue=True, max_attempts=3)
    claim_as("a:1:T")
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    assert rescue() == 1
    job = RecordingJob.objects.get()
    assert (job.state, job.attempts, job.run_at, job.claimed_by) == (
        JobState.PENDING,
        1,
        frozen.now,
        "",
    )
    assert job.error_type == WORKER_LOST
    assert "stopped renewing its lease" in job.error_message


def test_an_expired_lease_with_attempts_spent_fails_as_worker_lost(frozen):
    RecordingJobFactory(enqueue=True, max_attempts=1)
    claim_as("a:1:T")
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    assert rescue() == 1
    job = RecordingJob.objects.get()
    assert (job.state, job.error_type, job.finished_at) == (
        JobState.FAILED,
        WORKER_LOST,
        frozen.now,
    )


def test_rescue_touches_only_running_rows():
    RecordingJobFactory(enqueue=True)
    RecordingJobFactory(enqueue=True).run()
    assert RecordingJob.objects.rescue(now=timesource.now() + 10 * LEASE) == 0


def test_a_late_finisher_cannot_overwrite_the_attempt_that_replaced_it(frozen, caplog):
    RecordingJobFactory(enqueue=True, max_attempts=3)
    stale = claim_as("a:1:T")
    stale.fail = True  # the stale attempt ends in failure: it must not be recorded
    late = execution.attempt(stale)  # performed in time, its outcome not yet written ...
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    rescue()  # ... when its worker froze for longer than a lease
    fresh = claim_as("b:2:T")
    assert fresh.attempts == 2
    execution.settle([late], execution.record_each([late], using="default"))
    execution.report(late)
    assert RecordingJob.objects.get().state == JobState.RUNNING
    assert "row moved on" in caplog.text
    execution.execute(fresh)
    job = RecordingJob.objects.get()
    assert (job.state, job.attempts, job.claimed_by) == (JobState.SUCCEEDED, 2, "b:2:T")


def test_a_lease_keeper_renews_the_leases_it_holds(frozen):
    RecordingJobFactory(enqueue=True)
    job = claim_as("a:1:T")
    keeper = LeaseKeeper()
    keeper.hold(job)
    frozen.now = NOON + timedelta(seconds=45)
    keeper.beat()
    assert RecordingJob.objects.get().lease_expires_at == NOON + timedelta(seconds=45) + LEASE


def test_a_lease_keeper_lets_go_of_a_job_that_lost_its_claim(frozen, caplog):
    RecordingJobFactory(enqueue=True)
    job = claim_as("a:1:T")
    keeper = LeaseKeeper()
    keeper.hold(job)
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    rescue()
    keeper.beat()
    assert keeper.held() == []
    assert RecordingJob.objects.get().lease_expires_at is None
    assert "lost its claim while running" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_job_running_longer_than_its_lease_is_never_rescued(settings):
    settings.JOBS_LEASE_SECONDS = 1
    job = RecordingJobFactory(enqueue=True, sleep_seconds=2.5)
    rescued = []
    done = threading.Event()

    def rescue_all_the_time():
        try:
            while not done.is_set():
                rescued.append(rescue())
                time.sleep(0.05)
        finally:
            connection.close()

    rescuer = threading.Thread(target=rescue_all_the_time)
    rescuer.start()
    try:
        job.run()
    finally:
        done.set()
        rescuer.join()
    assert sum(rescued) == 0
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED
    assert Effect.objects.filter(job_id=job.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failing_beat_is_logged_and_the_leases_are_still_renewed(settings, caplog):
    settings.JOBS_LEASE_SECONDS = 1
    job = RecordingJobFactory(enqueue=True)
    execution.claim_for_run(job)
    beats = []

    def housekeeping_with_a_bug():
        beats.append(time.monotonic())
        if len(beats) == 1:
            raise RuntimeError("a bug in housekeeping")

    with LeaseKeeper(on_beat=housekeeping_with_a_bug) as keeper:
        keeper.hold(job)
        first_lease = RecordingJob.objects.get(pk=job.pk).lease_expires_at
        wait_for(lambda: len(beats) >= 3, timeout=10)
    assert RecordingJob.objects.get(pk=job.pk).lease_expires_at > first_lease
    assert "a heartbeat failed; trying again at the next one" in caplog.text
    assert "RuntimeError: a bug in housekeeping" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_row_and_marks_it_stopped_when_it_exits():
    RecordingJobFactory(enqueue=True)
    worker = WorkerLoop(burst=True)
    worker.run()
    row = WorkerRow.objects.get(name=worker.name)
    assert (row.state, row.jobs_performed, row.jobs_in_flight) == (WorkerRow.State.STOPPED, 1, [])
    assert row.stopped_at is not None
    assert row.pid > 0


@pytest.mark.django_db(transaction=True)
def test_a_worker_rescues_orphans_when_it_starts(settings):
    settings.JOBS_LEASE_SECONDS = 1
    RecordingJobFactory(enqueue=True, max_attempts=2)
    claim_as("dead:1:T")
    time.sleep(1.1)
    assert WorkerLoop(burst=True).run() == 1
    job = RecordingJob.objects.get()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)


@pytest.mark.django_db(transaction=True)
def test_heartbeats_refresh_the_worker_row_and_forget_long_dead_workers(settings):
    settings.JOBS_LEASE_SECONDS = 1
    now = timesource.now()
    WorkerRow.objects.create(
        name="gone:1",
        host="gone",
        pid=1,
        started_at=now - 2 * DEAD_WORKER_RETENTION,
        last_heartbeat_at=now - DEAD_WORKER_RETENTION - timedelta(seconds=1),
    )
    worker = WorkerLoop(interval=0.05)
    thread = in_thread(worker)
    try:
        time.sleep(1)  # four heartbeats at a quarter of the 1 s lease
        row = WorkerRow.objects.get(name=worker.name)
        assert row.last_heartbeat_at > row.started_at
        assert not WorkerRow.objects.filter(name="gone:1").exists()
    finally:
        worker.stop()
        thread.join()


def test_a_job_that_finished_while_its_lease_was_being_renewed_is_not_reported_lost(caplog):
    RecordingJobFactory(enqueue=True)
    job = claim_as("a:1:T")
    keeper = LeaseKeeper()
    keeper.hold(job)
    execution.execute(job)  # finishes before the keeper lets go of it
    keeper.beat()
    assert "lost its claim" not in caplog.text


def test_a_job_let_go_while_its_renewal_ran_is_not_reported_lost(caplog):
    """The worker lets go of a finished job's lease, then writes its outcome; a renewal that
    took its list of held jobs just before must not call the moved row lost."""
    RecordingJobFactory(enqueue=True)
    job = claim_as("a:1:T")
    keeper = LeaseKeeper()
    keeper.hold(job)
    held = keeper.held()
    keeper.release(job)  # collected by the worker ...
    RecordingJob.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)  # ... and written
    keeper._renew(held)
    assert "lost its claim" not in caplog.text
    assert not job.cancellation_requested()


def test_an_attempt_whose_lease_ran_out_before_it_started_is_handed_back_unperformed(
    frozen, caplog
):
    RecordingJobFactory(enqueue=True, max_attempts=1)
    job = claim_as("a:1:T")
    frozen.now = NOON + LEASE  # frozen for a lease between its claim and its start
    execution.execute(job)
    assert not Effect.objects.exists()
    row = RecordingJob.objects.get()
    assert (row.state, row.attempts, row.claimed_by) == (JobState.PENDING, 0, "")
    assert "not started: its lease ran out at 12:01:00.000" in caplog.text


def test_an_attempt_rescued_before_it_started_is_not_performed_nor_written(frozen):
    RecordingJobFactory(enqueue=True, max_attempts=2)
    job = claim_as("a:1:T")
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    rescue()
    fresh = claim_as("b:2:T")
    execution.execute(job)
    assert not Effect.objects.exists()
    row = RecordingJob.objects.get()
    assert (row.state, row.attempts, row.claimed_by) == (JobState.RUNNING, 2, fresh.claimed_by)


def test_a_job_whose_claim_is_lost_is_asked_to_stop(frozen):
    RecordingJobFactory(enqueue=True)
    job = claim_as("a:1:T")
    keeper = LeaseKeeper()
    keeper.hold(job)
    frozen.now = NOON + LEASE + timedelta(seconds=1)
    rescue()
    assert not job.cancellation_requested()
    keeper.beat()
    assert job.cancellation_requested()
