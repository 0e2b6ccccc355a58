"""Workers behind PgBouncer in transaction mode (`JOBS_TRANSACTION_POOLING`): every statement
of theirs goes through it, and nothing may rely on a server session outliving a transaction.

Two workers drain a queue through it, each job exactly once; a worker told of a direct
connection (`JOBS_LISTEN = "direct"`) LISTENs there and starts a new job in milliseconds; one
with none polls; the chaos test runs through it. The workers are configured as the example
project documents it: `DATABASE_TRANSACTION_POOLING=1`, and `DATABASE_DIRECT_URL` for LISTEN.
"""

import time

import pytest

from jobs.models import JobState, Worker
from jobs.runtime.worker import EXIT_OK
from tests.conftest import database_url, needs_postgresql, start_manage, wait_for
from tests.integration import test_chaos
from tests.integration.test_connection_pool import drain_with_two_workers
from tests.pgbouncer import needs_pgbouncer, pgbouncer
from tests.testapp.models import Effect, RecordingJob

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    needs_postgresql("PgBouncer pools PostgreSQL connections"),
    needs_pgbouncer(),
]


@pytest.fixture
def pooled_env():
    """The environment of a worker that reaches the test database through PgBouncer."""
    with pgbouncer(database_url()) as url:
        yield {"DATABASE_URL": url, "DATABASE_TRANSACTION_POOLING": "1", "JOBS_LOG_LEVEL": "INFO"}


def test_two_workers_drain_through_pgbouncer_each_job_once(pooled_env):
    drain_with_two_workers(8, **pooled_env)


@pytest.mark.parametrize(("direct", "within"), [(True, 1.0), (False, 4.0)])
def test_a_worker_listens_on_the_direct_connection_or_polls_without_one(pooled_env, direct, within):
    """With a direct connection a new job starts in well under the 3 s poll interval; without
    one the worker still finds it, by polling."""
    env = {**pooled_env, **({"DATABASE_DIRECT_URL": database_url()} if direct else {})}
    worker = start_manage("runjobs", "--interval", "3", "--threads", "2", **env)
    try:
        wait_for(Worker.objects.exists, 30, "the worker to register")
        time.sleep(0.5)  # its listener, if any, is listening
        job = RecordingJob.objects.create(label_text="woken").enqueue()
        began = time.monotonic()
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists(), 10, "the job to start")
        assert time.monotonic() - began < within
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == EXIT_OK, stderr
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED


def test_chaos_through_pgbouncer(pooled_env, monkeypatch, capsys):
    """The chaos test, its workers going through PgBouncer, LISTENing on a direct connection."""
    env = {**pooled_env, "DATABASE_DIRECT_URL": database_url(), "JOBS_LOG_LEVEL": "ERROR"}
    monkeypatch.setattr(test_chaos, "WORKER_ENV", {**test_chaos.WORKER_ENV, **env})
    test_chaos.test_chaos_every_job_succeeds_and_every_duplicate_is_explained(capsys)
