"""A worker stopped while it starts leaves cleanly: real `runjobs` processes, real SIGTERM
(and SIGINT) at moments inside its start-up (Django loading, the checks, registering)."""

import signal
import time

import pytest

from jobs.models import JobState
from tests.conftest import start_manage
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def stop_after(delay: float, *args: str, signum: int = signal.SIGTERM) -> tuple[int, str]:
    worker = start_manage("runjobs", *args, JOBS_LOG_LEVEL="INFO")
    try:
        time.sleep(delay)
        worker.send_signal(signum)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    return worker.returncode, stderr


@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0])
def test_sigterm_while_the_worker_starts_exits_0_and_loses_no_job(delay):
    job = RecordingJobFactory(enqueue=True)
    status, stderr = stop_after(delay)
    assert status == 0, stderr
    job.refresh_from_db()
    # Untouched, or run to the end: never left running.
    assert (job.state, job.attempts) in {(JobState.PENDING, 0), (JobState.SUCCEEDED, 1)}


@pytest.mark.parametrize("delay", [0.2, 0.5, 1.0, 1.5])
def test_sigterm_while_a_supervisor_starts_exits_0_with_every_worker_stopped(delay):
    RecordingJobFactory.create_batch(2, enqueue=True)
    status, stderr = stop_after(delay, "--processes", "2")
    assert status == 0, stderr
    assert not RecordingJob.objects.filter(state=JobState.RUNNING).exists()


def test_sigint_while_the_worker_starts_exits_0_too():
    status, stderr = stop_after(0.3, signum=signal.SIGINT)
    assert status == 0, stderr
