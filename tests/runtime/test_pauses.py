"""Paused queues (`jobs.models.QueuePause`, `jobs.runtime.claims`): real workers stop
claiming from a paused queue within a second, other queues go on, a resume drains it, and
the pause outlives the worker; what it costs in statements."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import timesource
from jobs.db.wakeup import PAUSES, pauses_changed, payload, read_payload
from jobs.models import JobState, QueuePause
from jobs.runtime import claims
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, listen_notify, manage, wait_for
from tests.testapp.models import RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db(transaction=True)

SECOND = timedelta(seconds=1)


def workers(*loops: WorkerLoop):
    """Run `loops` on threads; stop and join them when the returned callable is called."""
    threads = [in_thread(loop) for loop in loops]

    def stop() -> None:
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()

    return stop


def feed(until: threading.Event) -> None:
    """Enqueue a short job on each of two queues every 50 ms until told to stop."""
    try:
        while not until.is_set():
            RecordingJob.objects.create(sleep_seconds=0.02).enqueue(queue="default")
            UrgentJob.objects.create().enqueue(queue="urgent")
            time.sleep(0.05)
    finally:
        connection.close()


def test_a_pause_stops_every_worker_within_a_second_and_a_resume_drains_the_queue():
    # One worker serves every queue (the paused one is left out of its statements), one
    # names its queues (the paused one is no candidate).
    stop = workers(
        WorkerLoop(models=[RecordingJob, UrgentJob], threads=2, interval=0.5),
        WorkerLoop(
            models=[RecordingJob, UrgentJob], queues=["default", "urgent"], threads=2, interval=0.5
        ),
    )
    done = threading.Event()
    feeder = threading.Thread(target=feed, args=(done,))
    feeder.start()
    try:
        wait_for(lambda: RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() >= 5)
        QueuePause.objects.pause("default", reason="deploy")
        paused_at = timesource.now()
        time.sleep(2.5)
        done.set()
        feeder.join()
        started_late = RecordingJob.objects.filter(started_at__gt=paused_at + SECOND)
        assert list(started_late.values_list("pk", "started_at")) == []
        assert UrgentJob.objects.filter(started_at__gt=paused_at + SECOND).exists()
        waiting = RecordingJob.objects.filter(state=JobState.PENDING)
        assert waiting.count() >= 20  # 2.5 s of feeding, every 50 ms
        assert set(waiting.values_list("attempts", flat=True)) == {0}
        assert not RecordingJob.objects.filter(state=JobState.RUNNING).exists()

        assert QueuePause.objects.resume("default")
        wait_for(lambda: not RecordingJob.objects.exclude(state=JobState.SUCCEEDED).exists())
        assert set(RecordingJob.objects.values_list("attempts", flat=True)) == {1}
    finally:
        done.set()
        feeder.join()
        stop()


def test_a_model_s_pause_leaves_the_other_models_of_the_queue_running():
    QueuePause.objects.pause("shared", model="testapp.UrgentJob")
    urgent = [UrgentJob.objects.create().enqueue(queue="shared") for _ in range(3)]
    recording = [RecordingJob.objects.create().enqueue(queue="shared") for _ in range(3)]
    elsewhere = UrgentJob.objects.create().enqueue(queue="urgent")
    for queues in (["shared", "urgent"], None):  # named queues, then every queue
        WorkerLoop(models=[RecordingJob, UrgentJob], queues=queues, burst=True).run()
    assert set(RecordingJob.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}
    for job in urgent:
        job.refresh_from_db()
        assert (job.state, job.attempts) == (JobState.PENDING, 0)
    elsewhere.refresh_from_db()
    assert elsewhere.state == JobState.SUCCEEDED
    assert len(recording) == 3

    assert QueuePause.objects.resume("shared", model="testapp.UrgentJob")
    assert WorkerLoop(models=[RecordingJob, UrgentJob], burst=True).run() == 3


def test_a_pause_outlives_the_worker_a_restarted_worker_process_claims_nothing_from_it():
    QueuePause.objects.pause("default", reason="maintenance")
    paused = [RecordingJob.objects.create().enqueue() for _ in range(2)]
    other = UrgentJob.objects.create().enqueue()
    for _ in range(2):  # two worker processes one after the other
        result = manage("runjobs", "--burst")
        assert result.returncode == 0, result.stderr
    other.refresh_from_db()
    assert other.state == JobState.SUCCEEDED
    assert [RecordingJob.objects.get(pk=job.pk).state for job in paused] == [JobState.PENDING] * 2
    QueuePause.objects.resume("default")
    assert manage("runjobs", "--burst").returncode == 0
    assert set(RecordingJob.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}


def test_the_paused_queue_s_due_rows_do_not_keep_an_idle_worker_awake():
    """Its next-due read leaves paused rows out, or an idle worker would poll in a loop."""
    QueuePause.objects.pause("default")
    RecordingJob.objects.create().enqueue()
    loop = WorkerLoop(models=[RecordingJob, UrgentJob], interval=0.2)
    assert loop.claim(2) == []
    assert loop._claims.next_due() is None
    UrgentJob.objects.create().enqueue(run_at=timesource.now() + timedelta(hours=1))
    assert loop._claims.next_due() > timesource.now() + timedelta(minutes=59)


def pause_reads(queries: CaptureQueriesContext) -> int:
    return sum(QueuePause._meta.db_table in query["sql"] for query in queries.captured_queries)


def test_a_busy_worker_reads_the_pauses_at_most_once_a_second_not_once_per_claim():
    for _ in range(400):
        RecordingJob.objects.create().enqueue()
    loop = WorkerLoop(models=[RecordingJob], interval=0.2)
    began = time.monotonic()
    claimed = 0
    with CaptureQueriesContext(connection) as queries:
        while time.monotonic() - began < 2.2:
            claimed += len(loop.claim(1))
    seconds = time.monotonic() - began
    assert claimed > 10
    assert 1 <= pause_reads(queries) <= int(seconds) + 1


def test_an_idle_worker_reads_the_pauses_only_when_it_asks_a_table():
    loop = WorkerLoop(models=[RecordingJob, UrgentJob], interval=0.5)
    began = time.monotonic()
    cycles = 0
    with CaptureQueriesContext(connection) as queries:
        while time.monotonic() - began < 2.2:
            assert loop.claim(2) == []
            cycles += 1
            time.sleep(0.01)
    seconds = time.monotonic() - began
    assert cycles > 50
    # Its tables are known empty between polls (every 0.5 s): no claim, no read; a poll
    # reads them once a second at most.
    assert 1 <= pause_reads(queries) <= int(seconds) + 1


def test_a_pause_s_wake_up_is_a_label_no_model_has_so_older_workers_drop_it():
    hint = pauses_changed("default")
    assert payload(hint) == "default !pauses"
    assert read_payload(payload(hint)) == ("default", PAUSES)
    assert "." not in PAUSES  # a model's label always has one


@listen_notify
def test_on_postgresql_a_pause_and_a_resume_reach_the_worker_by_wake_up(monkeypatch):
    # Without the wake-up the worker would not read the pauses again for a minute.
    monkeypatch.setattr(claims, "PAUSES_REFRESH", 60.0)
    loop = WorkerLoop(models=[RecordingJob, UrgentJob], threads=2, interval=30)
    stop = workers(loop)
    try:
        first = RecordingJob.objects.create().enqueue()
        wait_for(lambda: RecordingJob.objects.filter(pk=first.pk, state=JobState.SUCCEEDED))
        QueuePause.objects.pause("default")
        time.sleep(0.5)
        held = RecordingJob.objects.create().enqueue()
        UrgentJob.objects.create().enqueue()
        wait_for(lambda: UrgentJob.objects.filter(state=JobState.SUCCEEDED).exists(), timeout=5)
        time.sleep(0.5)
        held.refresh_from_db()
        assert held.state == JobState.PENDING
        resumed = time.monotonic()
        QueuePause.objects.resume("default")
        wait_for(lambda: RecordingJob.objects.filter(pk=held.pk, state=JobState.SUCCEEDED))
        assert time.monotonic() - resumed < 5  # the wake-up, not the 30 s poll
    finally:
        stop()
