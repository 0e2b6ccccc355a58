"""run() under concurrency: never two performs, never a job seen before its commit."""

import threading

import pytest
from django.db import connection, transaction

from jobs.errors import JobNotRunnable
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import manage, row_locks
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(job_id: int, count: int) -> list[str]:
    """Call run() on the same row from `count` threads released at the same instant."""
    start = threading.Barrier(count)
    outcomes: list[str] = []

    def attempt():
        try:
            start.wait()
            RecordingJob.objects.get(pk=job_id).run()
            outcomes.append("performed")
        except JobNotRunnable:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_run_from_threads_performs_once():
    job = RecordingJobFactory(enqueue=True, sleep_seconds=0.2)
    outcomes = run_in_threads(job.pk, 4)
    assert sorted(outcomes) == ["performed", "refused", "refused", "refused"]
    assert Effect.objects.filter(job_id=job.pk).count() == 1
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED


def test_concurrent_run_from_two_processes_performs_once():
    job = RecordingJobFactory(enqueue=True, sleep_seconds=0.5)
    code = (
        "from tests.testapp.models import RecordingJob\n"
        f"RecordingJob.objects.get(pk={job.pk}).run()\n"
    )
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(manage("shell", "-c", code)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.returncode for result in results) == [0, 1]
    refused = next(result for result in results if result.returncode)
    assert "JobNotRunnable" in refused.stderr
    assert Effect.objects.filter(job_id=job.pk).count() == 1


def enqueue_and_hold(holding: threading.Event, release: threading.Event, outcome: str) -> None:
    """Enqueue a job in a transaction that stays open until `release`, then commit or roll back."""
    try:
        with transaction.atomic():
            RecordingJobFactory(enqueue=True)
            holding.set()
            release.wait(10)
            if outcome == "rollback":
                transaction.set_rollback(True)
    finally:
        connection.close()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_job_enqueued_in_an_open_transaction_is_invisible_until_commit(outcome):
    holding, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=enqueue_and_hold, args=(holding, release, outcome))
    thread.start()
    assert holding.wait(10)
    try:
        assert not RecordingJob.objects.runnable().exists()
    finally:
        release.set()
        thread.join()
    assert RecordingJob.objects.runnable().count() == (1 if outcome == "commit" else 0)


@row_locks
def test_worker_cannot_claim_a_job_before_its_transaction_commits():
    holding, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=enqueue_and_hold, args=(holding, release, "commit"))
    thread.start()
    assert holding.wait(10)
    try:
        assert WorkerLoop().claim() == []
    finally:
        release.set()
        thread.join()
    assert len(WorkerLoop().claim()) == 1
