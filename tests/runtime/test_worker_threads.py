"""A worker with threads: batched claims, limits, timeouts and sleeping until there is work."""

from datetime import timedelta

import pytest
from django.db import connection

from jobs import timesource
from jobs.db import engine_for
from jobs.errors import JobTimeout
from jobs.models import JobState
from jobs.runtime.worker import EXIT_RECYCLE, WorkerLoop
from tests.conftest import in_thread, needs_postgresql, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db(transaction=True)


def states() -> dict[int, str]:
    return dict(RecordingJob.objects.values_list("pk", "state"))


def test_free_threads_are_filled_by_one_claim_and_run_at_once():
    RecordingJobFactory.create_batch(4, enqueue=True, sleep_seconds=0.3)
    assert WorkerLoop(threads=4, burst=True).run() == 4
    rows = RecordingJob.objects.all()
    # One claim statement stamps every row it takes with the same start time, and every job
    # started before any finished: four ran side by side.
    assert len({row.started_at for row in rows}) == 1
    assert max(row.started_at for row in rows) < min(row.finished_at for row in rows)
    assert Effect.objects.count() == 4


def test_max_jobs_is_exact_however_many_threads_are_free():
    RecordingJobFactory.create_batch(10, enqueue=True)
    worker = WorkerLoop(threads=4, max_jobs=5, burst=True)
    assert worker.run() == 5
    assert worker.exit_code == EXIT_RECYCLE
    assert sorted(states().values()).count(JobState.SUCCEEDED) == 5
    assert RecordingJob.objects.pending().count() == 5


def test_a_timed_out_job_recycles_the_worker_while_the_others_finish():
    stuck = RecordingJobFactory(enqueue=True, sleep_seconds=3, timeout=1)
    quick = RecordingJobFactory.create_batch(2, enqueue=True, sleep_seconds=0.2)
    worker = WorkerLoop(threads=3, burst=True)
    worker.run()
    assert worker.exit_code == EXIT_RECYCLE
    stuck.refresh_from_db()
    assert (stuck.state, stuck.error_type) == (JobState.FAILED, "jobs.errors.JobTimeout")
    assert JobTimeout.__name__ in stuck.error_traceback or "timeout" in stuck.error_message
    assert {states()[job.pk] for job in quick} == {JobState.SUCCEEDED}


def test_an_idle_worker_sleeps_until_the_next_scheduled_job_not_the_poll_interval():
    job = RecordingJobFactory(enqueue=True, enqueue__delay=timedelta(seconds=0.5))
    worker = WorkerLoop(interval=60)
    thread = in_thread(worker)
    try:
        # With a 60 s poll interval, only sleeping until run_at starts it within seconds.
        wait_for(lambda: states()[job.pk] == JobState.SUCCEEDED, timeout=10)
    finally:
        worker.stop()
        thread.join()
    job.refresh_from_db()
    assert job.started_at >= job.run_at


@needs_postgresql("its planner's EXPLAIN")
def test_the_claim_walks_a_pending_index_in_order_even_with_stale_statistics():
    """A backlog that arrives after the last ANALYZE must not make every claim sort it."""
    RecordingJobFactory.create_batch(20, enqueue=True)
    RecordingJob.objects.update(state=JobState.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {RecordingJob._meta.db_table}")  # "nothing is pending"
    RecordingJob.objects.bulk_enqueue(RecordingJob() for _ in range(3000))
    backend = engine_for("default")
    assert (
        len(backend.claim(RecordingJob, queue=None, worker="w", now=timesource.now(), limit=4)) == 4
    )
    sql, params = backend._claim_statement(
        RecordingJob, queue=None, worker="w", now=timesource.now(), limit=4
    )
    with connection.cursor() as cursor:  # the claiming session, as the worker's main thread
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "_any on" in plan, plan  # the pending rows of every queue, in claim order
    assert "Sort" not in plan, plan
