"""A worker killed with SIGKILL loses no job: its jobs are rescued once their lease runs out."""

import signal
import time
from socket import gethostname

import pytest

from jobs.models import JobState
from jobs.models.queryset import WORKER_LOST
from tests.conftest import manage, start_manage, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHORT_LEASE = {"JOBS_LEASE_SECONDS": "1", "JOBS_LOG_LEVEL": "WARNING"}


def test_job_of_a_sigkilled_worker_is_rescued_and_run_by_another():
    job = RecordingJobFactory(enqueue=True, max_attempts=3, sleep_seconds=1.5)
    doomed = start_manage("runjobs", "--interval", "0.1", **SHORT_LEASE)
    try:
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists())
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        doomed.kill()
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.RUNNING

    time.sleep(1.2)  # the dead worker's lease runs out
    rescuer = manage("runjobs", "--burst", **SHORT_LEASE)
    assert rescuer.returncode == 0, rescuer.stderr
    assert (
        f"testapp.RecordingJob#{job.pk} rescued: its worker {gethostname()}:{doomed.pid} stopped "
        "renewing the lease of attempt 1; now pending"
    ) in rescuer.stderr

    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    # Two executions, and the first is explained by the kill.
    assert list(Effect.objects.filter(job_id=job.pk).values_list("attempt", flat=True)) == [1, 2]


def test_a_job_that_kills_its_worker_every_time_ends_failed_as_worker_lost():
    job = RecordingJobFactory(enqueue=True, max_attempts=2, kill_worker=True)
    exits = []
    for _ in range(4):
        result = manage("runjobs", "--burst", **SHORT_LEASE)
        exits.append(result.returncode)
        if result.returncode == 0:
            break
        time.sleep(1.2)  # let the killed worker's lease run out
    job.refresh_from_db()
    assert exits == [-signal.SIGKILL, -signal.SIGKILL, 0]
    assert (job.state, job.attempts, job.error_type) == (JobState.FAILED, 2, WORKER_LOST)
    assert Effect.objects.filter(job_id=job.pk).count() == 2
