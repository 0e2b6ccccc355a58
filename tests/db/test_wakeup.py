"""Waking idle workers on PostgreSQL: one NOTIFY per transaction, on commit, and the listener."""

import threading

import psycopg
import pytest
from django.db import transaction

from jobs.db.postgresql import CHANNEL
from jobs.models import Worker as WorkerRow
from jobs.runtime.doorbell import Doorbell
from jobs.runtime.worker import WorkerLoop
from tests.conftest import database_url, in_thread, listen_notify, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import HugeErrorJob, RecordingJob

pytestmark = [pytest.mark.django_db(transaction=True), listen_notify]


@pytest.fixture
def listener():
    """A connection of its own LISTENing, as a worker's listener thread does."""
    url = database_url().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"LISTEN {CHANNEL}")
        yield connection


def received(listener: psycopg.Connection) -> list[str]:
    return [note.payload for note in listener.notifies(timeout=0.3)]


def test_an_enqueue_outside_a_transaction_wakes_workers_naming_its_queue_and_model(listener):
    RecordingJobFactory(enqueue=True, enqueue__queue="mail")
    assert received(listener) == ["mail testapp.RecordingJob"]


def test_an_unsaved_job_enqueued_names_its_queue_and_model(listener):
    RecordingJob(label_text="new").enqueue(queue="mail")
    assert received(listener) == ["mail testapp.RecordingJob"]


def test_a_proxy_model_s_rows_wake_workers_of_its_concrete_model(listener):
    HugeErrorJob.objects.create().enqueue()
    assert received(listener) == ["default testapp.RecordingJob"]


def test_a_transaction_wakes_workers_once_per_queue_and_only_when_it_commits(listener):
    with transaction.atomic():
        for _ in range(50):
            RecordingJobFactory(enqueue=True)
        RecordingJobFactory(enqueue=True, enqueue__queue="mail")
        assert received(listener) == []  # nothing is visible to workers yet
    assert sorted(received(listener)) == [
        "default testapp.RecordingJob",
        "mail testapp.RecordingJob",
    ]


def test_a_rolled_back_transaction_wakes_no_one_and_the_next_one_still_does(listener):
    with transaction.atomic():
        RecordingJobFactory(enqueue=True)
        transaction.set_rollback(True)
    assert received(listener) == []
    with transaction.atomic():
        RecordingJobFactory(enqueue=True)
    assert received(listener) == ["default testapp.RecordingJob"]


def test_bulk_enqueue_wakes_workers_once(listener):
    RecordingJob.objects.bulk_enqueue([RecordingJob() for _ in range(500)])
    assert received(listener) == ["default testapp.RecordingJob"]


def test_a_requeue_of_rows_of_any_queue_wakes_every_worker_for_that_model(listener):
    RecordingJobFactory(enqueue=True).cancel()
    received(listener)
    assert RecordingJob.objects.cancelled().requeue() == 1
    assert received(listener) == ["* testapp.RecordingJob"]


def test_no_wake_ups_when_listening_is_turned_off(listener, settings):
    settings.JOBS_LISTEN = False
    RecordingJobFactory(enqueue=True)
    assert received(listener) == []


def test_an_idle_worker_is_woken_by_an_enqueue_on_another_connection():
    worker = WorkerLoop(interval=60)
    thread = in_thread(worker)
    try:
        wait_for(lambda: WorkerRow.objects.filter(name=worker.name).exists())
        job = RecordingJobFactory(enqueue=True)
        wait_for(lambda: RecordingJob.objects.succeeded().filter(pk=job.pk).exists(), timeout=10)
    finally:
        worker.stop()
        thread.join()


def test_a_worker_of_other_queues_is_not_woken():
    woken = threading.Event()
    worker = WorkerLoop(queues=["urgent"], interval=60)
    worker._wakeup = _Spy(woken)
    thread = in_thread(worker)
    try:
        wait_for(lambda: WorkerRow.objects.filter(name=worker.name).exists())
        woken.clear()
        RecordingJobFactory(enqueue=True, enqueue__queue="default")
        assert not woken.wait(1)
        RecordingJobFactory(enqueue=True, enqueue__queue="urgent")
        assert woken.wait(5)
    finally:
        worker.stop()
        thread.join()


class _Spy(Doorbell):
    """The worker's doorbell, reporting each wake-up to the test."""

    def __init__(self, woken: threading.Event) -> None:
        super().__init__()
        self._woken = woken

    def ring(self) -> None:
        self._woken.set()
        super().ring()
