"""Kill: a running job that ignores Cancel is recorded as failed for good, with its stack,
and its worker process is recycled; under a supervisor a fresh one takes over. Real
`runjobs` processes; the admin's side (the button, its confirmation) is in
tests/admin/test_kill.py and tests/e2e/test_kill_in_browser.py."""

import signal
import subprocess

import pytest

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.runtime.worker import EXIT_RECYCLE
from tests.conftest import start_manage, wait_for
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUIET = {"JOBS_LOG_LEVEL": "WARNING"}


def stubborn() -> RecordingJob:
    """A job that sleeps for a minute and never checks for a cancel request."""
    return RecordingJob.objects.create(sleep_seconds=60, max_attempts=5).enqueue()


def running(job) -> bool:
    return RecordingJob.objects.get(pk=job.pk).state == JobState.RUNNING


def test_kill_records_a_final_failure_with_the_stack_and_the_worker_exits_to_be_replaced():
    job = stubborn()
    worker = start_manage("runjobs", "--no-clock", "--interval", "0.1", **QUIET)
    try:
        wait_for(lambda: running(job), 30)
        assert RecordingJob.objects.filter(pk=job.pk).cancel() == 1  # asked; it does not check
        assert RecordingJob.objects.filter(pk=job.pk).kill() == 1
        assert RecordingJob.objects.filter(pk=job.pk).kill() == 0  # asked once
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == EXIT_RECYCLE, stderr
    assert "was killed" in stderr
    killed = RecordingJob.objects.get(pk=job.pk)
    assert (killed.state, killed.attempts) == (JobState.FAILED, 1)  # final, attempts left or not
    assert killed.error_type == "jobs.errors.JobKilled"
    assert "Stack of the job when it was killed" in killed.error_traceback
    assert "time.sleep(self.sleep_seconds)" in killed.error_traceback
    assert Effect.objects.filter(job_id=job.pk).count() == 1


def test_under_a_supervisor_a_fresh_worker_takes_over_after_a_kill():
    job = stubborn()
    after = RecordingJob.objects.create(label_text="after").enqueue(delay=0)
    supervisor = start_manage(
        "runjobs", "--processes", "1", "--threads", "1", "--no-clock", "--interval", "0.1", **QUIET
    )
    try:
        wait_for(lambda: running(job), 30)
        first = set(
            WorkerRow.objects.exclude(processes__isnull=False).values_list("pid", flat=True)
        )
        RecordingJob.objects.filter(pk=job.pk).kill()
        wait_for(lambda: RecordingJob.objects.get(pk=after.pk).state == JobState.SUCCEEDED, 60)
        workers = WorkerRow.objects.exclude(processes__isnull=False).values_list("pid", flat=True)
        assert set(workers) - first, "no fresh worker process"
        assert RecordingJob.objects.get(pk=job.pk).state == JobState.FAILED
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            raise


def worker_pids() -> set[int]:
    """The worker processes that have registered (not their supervisor)."""
    workers = WorkerRow.objects.filter(supervisor__isnull=False)
    return set(workers.values_list("pid", flat=True))
