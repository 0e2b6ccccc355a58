"""Workers on Django's connection pool (`OPTIONS["pool"]`, psycopg_pool): two real worker
processes drain a queue through their pools, each job exactly once; a pool too small for a
worker is refused at start, before it claims anything."""

from collections import Counter

import pytest

from jobs.runtime.worker import EXIT_OK
from tests.conftest import manage, needs_postgresql, start_manage
from tests.testapp.models import Effect, RecordingJob

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    needs_postgresql("Django's connection pool is psycopg's"),
]

POOLED = {"DATABASE_POOL_SIZE": "8", "JOBS_LOG_LEVEL": "WARNING"}


def drain_with_two_workers(threads: int, **env: str) -> None:
    """600 jobs drained by two `runjobs --burst` processes in environment `env`: every job
    exactly once, and both workers took a share."""
    jobs = RecordingJob.objects.bulk_enqueue(
        RecordingJob(label_text=f"shared-{n}", sleep_seconds=0.002) for n in range(600)
    )
    workers = [
        start_manage("runjobs", "--burst", "--threads", str(threads), **env) for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == EXIT_OK, stderr
    performed = Counter(Effect.objects.values_list("job_id", flat=True))
    assert set(performed) == {job.pk for job in jobs}
    assert set(performed.values()) == {1}
    assert len(set(Effect.objects.values_list("worker", flat=True))) == 2


def test_two_pooled_workers_drain_the_queue_each_job_once():
    drain_with_two_workers(4, **POOLED)


def test_a_pool_smaller_than_a_worker_needs_is_refused_before_it_claims():
    RecordingJob.objects.bulk_enqueue([RecordingJob(label_text="waits")])
    result = manage("runjobs", "--threads", "10", DATABASE_POOL_SIZE="8")
    assert result.returncode == 1
    assert (
        "each worker process needs 13 connections, but the database's connection pool holds "
        "at most 8: raise OPTIONS['pool']['max_size'] or lower --threads"
    ) in result.stderr
    assert not Effect.objects.exists()


def test_a_supervisor_s_forked_workers_each_get_a_pool_of_their_own():
    """A pool's sockets and threads belong to the process that made it: the supervisor
    closes its pool before forking, and each worker process makes its own."""
    jobs = RecordingJob.objects.bulk_enqueue(
        RecordingJob(label_text=f"forked-{n}", sleep_seconds=0.002) for n in range(400)
    )
    result = manage("runjobs", "--burst", "--processes", "2", "--threads", "4", **POOLED)
    assert result.returncode == EXIT_OK, result.stderr
    performed = Counter(Effect.objects.values_list("job_id", flat=True))
    assert set(performed) == {job.pk for job in jobs}
    assert set(performed.values()) == {1}
