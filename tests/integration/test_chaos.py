"""The chaos test: workers SIGKILLed at random and connections cut, and not one job lost.

5,000 jobs, each leaving one Effect row per execution; three real `runjobs` processes; a
random one SIGKILLed every 1 to 2 seconds and replaced; every worker connection terminated
once in the middle (the suite does not own the PostgreSQL server, so it cannot restart it).
At the end every job has succeeded, and every duplicate execution is explained: a worker
runs its default number of jobs at once (`DEFAULT_THREADS`), so each kill and each worker
whose connections were cut can account for at most that many.
"""

import random
import signal
import time
from collections import Counter

import pytest

from jobs.models import JobState
from jobs.runtime.worker import DEFAULT_THREADS
from tests.conftest import needs_postgresql, start_manage
from tests.integration.test_database_outage import cut_other_connections
from tests.testapp.models import Effect, RecordingJob

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    needs_postgresql("pg_terminate_backend to cut connections"),
    pytest.mark.django_db(transaction=True),
]

JOBS = 5_000
WORKERS = 3
DEADLINE_SECONDS = 240
WORKER_ENV = {"JOBS_LEASE_SECONDS": "2", "JOBS_LOG_LEVEL": "ERROR"}


def start_worker():
    return start_manage("runjobs", "--interval", "0.1", "--grace", "5", **WORKER_ENV)


def test_chaos_every_job_succeeds_and_every_duplicate_is_explained(capsys):
    chance = random.Random(20261122)
    RecordingJob.objects.bulk_create(  # created new, then enqueued through the public verb
        RecordingJob(
            label_text=f"chaos-{n}", sleep_seconds=chance.uniform(0.005, 0.03), max_attempts=25
        )
        for n in range(JOBS)
    )
    for job in RecordingJob.objects.all():
        job.enqueue()

    workers = [start_worker() for _ in range(WORKERS)]
    kills = cut_workers = 0
    began = time.monotonic()
    next_kill = began + chance.uniform(1, 2)
    cut_done = False
    try:
        while RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() < JOBS:
            now = time.monotonic()
            assert now - began < DEADLINE_SECONDS, "the jobs were not all done in time"
            if now >= next_kill:
                victim = chance.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(timeout=10)
                workers[victim] = start_worker()
                kills += 1
                next_kill = now + chance.uniform(1, 2)
            if (
                not cut_done
                and RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() > JOBS // 2
            ):
                cut_workers = WORKERS if cut_other_connections() else 0
                cut_done = True
            time.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=30)

    executions = Counter(Effect.objects.values_list("job_id", flat=True))
    duplicates = sum(executions.values()) - len(executions)
    with capsys.disabled():  # the counts belong in CI's output, printed before the verdict
        print(
            f"\nchaos: {JOBS} jobs, {kills} SIGKILLs, "
            f"connections of {cut_workers} workers cut once, "
            f"{sum(executions.values())} executions, {duplicates} duplicates, "
            f"{time.monotonic() - began:.1f}s"
        )
    assert len(executions) == JOBS, "a job never ran"
    assert RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == JOBS
    assert kills >= 3
    assert duplicates <= (kills + cut_workers) * DEFAULT_THREADS
