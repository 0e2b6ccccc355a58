"""A job that SIGKILLs its worker does not cost its neighbours in the same process their only
attempt: real `runjobs` processes, real SIGKILL (the job kills its own worker), 1 s leases."""

import signal
import time

import pytest

from jobs.models import JobState
from jobs.models.queryset import WORKER_LOST
from tests.conftest import manage
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHORT_LEASE = {"JOBS_LEASE_SECONDS": "1", "JOBS_LOG_LEVEL": "WARNING"}


def runs(job: RecordingJob) -> int:
    return Effect.objects.filter(job_id=job.pk).count()


def test_neighbours_of_a_job_that_kills_its_worker_run_again_and_the_killer_ends_failed():
    # One attempt each, as TaskJob gives by default. The neighbours come first by priority,
    # so a one-thread worker runs them before it meets the killer again.
    neighbours = RecordingJobFactory.create_batch(
        2, enqueue=True, enqueue__priority=5, max_attempts=1, sleep_seconds=0.5
    )
    killer = RecordingJobFactory(enqueue=True, max_attempts=1, kill_worker=True)

    # All three claimed together; the killer takes the process down with the others in hand.
    first = manage("runjobs", "--burst", "--threads", "3", **SHORT_LEASE)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert runs(killer) == 1
    time.sleep(1.2)  # the leases run out

    # The rescuer gives all three their attempt back (none had lost a worker before), runs
    # the neighbours, then the killer, which kills it too.
    second = manage("runjobs", "--burst", "--threads", "1", **SHORT_LEASE)
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert second.stderr.count("; now pending") == 3, second.stderr
    for job in neighbours:
        job.refresh_from_db()
        assert (job.state, job.attempts, job.max_attempts) == (JobState.SUCCEEDED, 2, 2)
        assert job.error_type == ""
        assert [entry["type"] for entry in job.error_history] == [WORKER_LOST]
        assert "not counted" in job.error_history[0]["message"]
    time.sleep(1.2)

    # Lost a second time, the killer's attempt counts: failed after max_attempts + 1 tries.
    third = manage("runjobs", "--burst", **SHORT_LEASE)
    assert third.returncode == 0, third.stderr
    killer.refresh_from_db()
    assert (killer.state, killer.attempts, killer.error_type) == (JobState.FAILED, 2, WORKER_LOST)
    assert [entry["type"] for entry in killer.error_history] == [WORKER_LOST, WORKER_LOST]
    assert runs(killer) == 2
