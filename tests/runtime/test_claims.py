"""Claims across job models (`jobs.runtime.claims`): priority across tables, turns at equal
priority, tables known empty left alone until a wake-up, their next row's `run_at` or one
poll interval; with statements counted exactly."""

import contextlib
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, isolate_apps

from jobs import timesource
from jobs.db import engine_for
from jobs.db.postgresql import CHANNEL
from jobs.models import Job, JobState
from jobs.models import Worker as WorkerRow
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, listen_notify, wait_for
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import Effect, RecordingJob, StepJob, UrgentJob

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def many_models():
    """make(n): n job models with tables of their own, kept out of the app registry (so no
    other test's worker serves them), their tables dropped afterwards."""
    made = []

    def make(count: int) -> list[type[Job]]:
        with isolate_apps("tests.testapp"):
            models = [
                type(
                    f"Many{len(made) + number:02}",
                    (Job,),
                    {
                        "__module__": "tests.testapp.models",
                        "perform": lambda self: Effect.record(self),
                        "Meta": type("Meta", (), {"app_label": "testapp"}),
                    },
                )
                for number in range(count)
            ]
        with connection.schema_editor() as editor:
            for model in models:
                editor.create_model(model)
        made.extend(models)
        return models

    yield make
    with connection.schema_editor() as editor:
        for model in made:
            editor.delete_model(model)


# What Django logs of a transaction's beginning and end on MariaDB and MySQL, where a claim
# is a transaction (`jobs.db.mysql.engine`); not statements of the claim's own.
TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK"}
# A claim that takes rows: one UPDATE, or on MariaDB and MySQL a SELECT and an UPDATE.
CLAIM = 2 if connection.vendor == "mysql" else 1


@contextlib.contextmanager
def statements():
    """How many statements this thread's connection sends, in `.count` once the block ends.

    Django's query log holds the ORM's; the engine's claims, peeks and next-due reads go
    through `_fetch`, each one statement, which the log may or may not hold depending on the
    database, so each is counted once, whatever it logged. The once-per-connection session
    settings for claims (`prepare_claiming_session`) are made first, uncounted.
    """
    engine = engine_for("default")
    engine.prepare_claiming_session()
    logged_by_fetch = []
    fetch = engine._fetch

    def counted(sql, params):
        before = len(connection.queries_log)
        try:
            return fetch(sql, params)
        finally:
            logged_by_fetch.append(len(connection.queries_log) - before)

    engine._fetch = counted
    result = type("Statements", (), {})()
    try:
        with CaptureQueriesContext(connection) as captured:
            yield result
    finally:
        del engine._fetch
    transaction_control = sum(q["sql"] in TRANSACTION_CONTROL for q in captured)
    result.count = len(captured) - sum(logged_by_fetch) + len(logged_by_fetch) - transaction_control


def listening(worker: WorkerLoop) -> list:
    """The hints the worker's listener hands its claims, in a list the test reads."""
    heard = []
    hear = worker._claims.hear

    def spy(hints):
        heard.extend(hints)
        hear(hints)

    worker._claims.hear = spy
    return heard


def idle(loop: WorkerLoop) -> list[int]:
    """Statements of one idle cycle: a claim that finds nothing, then the next-due read."""
    with statements() as claim:
        assert loop.claim(4) == []
    with statements() as due:
        loop._claims.next_due()
    return [claim.count, due.count]


def test_priority_orders_work_across_job_models_in_one_queue():
    low = RecordingJobFactory(enqueue=True, enqueue__queue="shared", enqueue__priority=0)
    high = UrgentJobFactory(enqueue=True, enqueue__queue="shared", enqueue__priority=20)
    middle = StepJob.objects.create().enqueue(queue="shared", priority=5)
    loop = WorkerLoop(models=[RecordingJob, UrgentJob, StepJob], queues=["shared"])
    assert [(type(job), job.pk) for job in loop.claim(2)] == [
        (UrgentJob, high.pk),
        (StepJob, middle.pk),
    ]
    assert [(type(job), job.pk) for job in loop.claim(2)] == [(RecordingJob, low.pk)]


def test_a_higher_priority_row_of_one_model_goes_before_a_flood_of_another():
    for _ in range(5):
        RecordingJobFactory(enqueue=True, enqueue__priority=0)
    urgent = UrgentJobFactory(enqueue=True, enqueue__queue="default", enqueue__priority=1)
    loop = WorkerLoop(models=[RecordingJob, UrgentJob])
    [first] = loop.claim(1)
    assert (type(first), first.pk) == (UrgentJob, urgent.pk)


def test_at_equal_priority_one_claim_shares_its_rows_among_the_models_in_turn():
    for _ in range(3):
        RecordingJobFactory(enqueue=True, enqueue__priority=0)
        UrgentJobFactory(enqueue=True, enqueue__queue="default", enqueue__priority=0)
    loop = WorkerLoop(models=[RecordingJob, UrgentJob])
    claimed = loop.claim(4)
    assert sorted(type(job).__name__ for job in claimed) == ["RecordingJob"] * 2 + ["UrgentJob"] * 2
    assert sorted(type(job).__name__ for job in loop.claim(4)) == ["RecordingJob", "UrgentJob"]


def test_with_twenty_job_models_and_one_with_work_each_further_claim_is_one_statement(
    many_models,
):
    models = many_models(20)
    busy = models[13]
    for _ in range(6):
        busy.objects.create().enqueue()
    loop = WorkerLoop(models=models)
    with statements() as first:
        assert [type(job) for job in loop.claim(1)] == [busy]
    # one read of the paused queues (at most once a second), one peek at the 20 tables, one claim
    assert first.count == 2 + CLAIM
    for _ in range(5):
        with statements() as further:
            assert [type(job) for job in loop.claim(1)] == [busy]
        assert further.count == CLAIM


def test_an_idle_worker_s_cycle_costs_the_same_statements_with_two_models_or_twenty(
    many_models,
):
    few = WorkerLoop(models=many_models(2), interval=0.2)
    many = WorkerLoop(models=many_models(20), interval=0.2)
    # First cycle: the pauses' read (once a second at most), one peek and the next-due read;
    # then the memo answers the claim.
    assert idle(few) == idle(many) == [2, 1]
    assert idle(few) == idle(many) == [0, 1]
    time.sleep(0.25)  # one interval: the memo is no longer trusted, one peek asks again
    assert idle(few) == idle(many) == [1, 1]


def test_a_table_known_empty_is_asked_again_after_one_interval(many_models):
    models = many_models(3)
    loop = WorkerLoop(models=models, interval=0.3)
    assert loop.claim(1) == []
    job = models[1].objects.create().enqueue()  # on SQLite, or a lost wake-up: no hint heard
    assert loop.claim(1) == []
    time.sleep(0.35)
    assert [claimed.pk for claimed in loop.claim(1)] == [job.pk]


def test_a_row_due_later_ends_its_model_s_mark_when_due(many_models):
    models = many_models(3)
    job = models[2].objects.create().enqueue(delay=timedelta(seconds=0.4))
    loop = WorkerLoop(models=models, interval=60)
    assert loop.claim(1) == []
    assert loop._claims.next_due() == job.run_at
    time.sleep(0.45)
    assert [claimed.pk for claimed in loop.claim(1)] == [job.pk]


def test_a_burst_worker_asks_every_table_before_leaving_so_it_drains_what_its_jobs_enqueue(
    many_models,
):
    # Two threads, one row: the peek sees all of RecordingJob's rows, so the claim marks it
    # empty, and the chained job then enqueues two more there with no wake-up to hear.
    RecordingJobFactory(enqueue=True, behaviour="chain")
    assert WorkerLoop(models=[RecordingJob, *many_models(3)], threads=2, burst=True).run() == 3


def test_a_job_scheduled_later_is_run_when_due_by_a_worker_polling_once_a_minute(many_models):
    models = many_models(5)
    job = models[3].objects.create().enqueue(delay=timedelta(seconds=1))
    worker = WorkerLoop(models=models, interval=60)
    thread = in_thread(worker)
    try:
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists(), timeout=10)
    finally:
        worker.stop()
        thread.join()
    started_at = models[3].objects.get(pk=job.pk).started_at
    assert timedelta(0) <= started_at - job.run_at < timedelta(seconds=1)


def test_a_row_made_runnable_without_a_wake_up_is_claimed_within_one_interval(many_models):
    models = many_models(20)
    worker = WorkerLoop(models=models, interval=1)
    thread = in_thread(worker)
    try:
        wait_for(lambda: WorkerRow.objects.filter(name=worker.name).exists())
        time.sleep(0.3)  # the worker has found every table empty
        job = models[7].objects.create()
        models[7].objects.filter(pk=job.pk).update(
            state=JobState.PENDING, run_at=timesource.now()
        )  # raw: no wake-up
        made_runnable = time.monotonic()
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists(), timeout=10)
        assert time.monotonic() - made_runnable < 1 + 0.5
    finally:
        worker.stop()
        thread.join()


@listen_notify
def test_a_wake_up_naming_a_model_its_worker_knew_empty_gets_its_job_claimed_at_once(
    many_models,
):
    models = many_models(20)
    worker = WorkerLoop(models=models, interval=60)
    heard = listening(worker)
    thread = in_thread(worker)
    try:
        wait_for(lambda: len(worker._claims._empty_until) == 20)  # every table known empty
        enqueued = time.monotonic()
        job = models[11].objects.create().enqueue()
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists(), timeout=10)
        assert time.monotonic() - enqueued < 2  # woken, not the 60 s poll
    finally:
        worker.stop()
        thread.join()
    assert heard == [("default", models[11]._meta.label)]


@listen_notify
def test_a_wake_up_naming_only_the_queue_as_older_senders_do_wakes_every_model(many_models):
    models = many_models(20)
    worker = WorkerLoop(models=models, interval=60)
    heard = listening(worker)
    thread = in_thread(worker)
    try:
        wait_for(lambda: len(worker._claims._empty_until) == 20)
        job = models[4].objects.create()
        models[4].objects.filter(pk=job.pk).update(
            state=JobState.PENDING, run_at=timesource.now()
        )  # raw: no wake-up
        sent = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "default"])
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists(), timeout=10)
        assert time.monotonic() - sent < 2
    finally:
        worker.stop()
        thread.join()
    assert heard == [("default", None)]


@pytest.mark.parametrize("index", [0, 19])
def test_a_wake_up_for_another_model_or_queue_leaves_a_worker_s_empty_tables_unasked(
    many_models, index
):
    models = many_models(20)
    loop = WorkerLoop(models=models, queues=["default"], interval=60)
    assert loop.claim(1) == []
    loop._claims.hear([("default", "testapp.NotServedHere")])
    loop._claims.hear([("other", models[index]._meta.label)])
    with statements() as claim:
        assert loop.claim(1) == []
    assert claim.count == 0
    loop._claims.hear([("default", models[index]._meta.label)])
    with statements() as claim:
        assert loop.claim(1) == []
    assert claim.count == 1  # that model's table alone: a claim, no peek
