"""The claim statement: one row, runnable only, exclusive between sessions."""

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test.utils import CaptureQueriesContext

from jobs import execution, timesource
from jobs.db import engine_for
from jobs.execution import endings
from jobs.models import JobState
from tests.conftest import needs_postgresql, row_held, row_locks
from tests.factories import RecordingJobFactory
from tests.test_execution import claimed as claimed_for_run
from tests.test_execution import outcome_writes, states, succeeded
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db


def claim_many(**kwargs):
    options = {"queue": None, "worker": "test:1:main", "now": timesource.now(), **kwargs}
    return engine_for("default").claim(RecordingJob, **options)


def claim(**kwargs):
    """The one job a claim of one row returns, or None."""
    claimed = claim_many(limit=1, **kwargs)
    return claimed[0] if claimed else None


def test_claim_returns_the_row_running_with_its_fields_loaded():
    job = RecordingJobFactory(enqueue=True, label_text="payload")
    claimed = claim()
    assert claimed.pk == job.pk
    assert (claimed.state, claimed.attempts, claimed.claimed_by) == (
        JobState.RUNNING,
        1,
        "test:1:main",
    )
    assert claimed.label_text == "payload"
    assert claimed.started_at is not None
    assert claimed.requested_at == RecordingJob.objects.get(pk=job.pk).requested_at
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.RUNNING


def test_claim_takes_nothing_when_nothing_is_runnable():
    RecordingJobFactory()
    RecordingJobFactory(enqueue=True, enqueue__delay=60)
    assert claim() is None
    assert claim(now=timesource.now() + timedelta(seconds=61)) is not None


def test_claim_filters_by_queue():
    RecordingJobFactory(enqueue=True, enqueue__queue="a")
    assert claim(queue="b") is None
    assert claim(queue="a").queue == "a"


def test_a_claimed_row_is_not_claimed_again():
    RecordingJobFactory(enqueue=True)
    assert claim() is not None
    assert claim() is None


@row_locks
@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_row_another_session_has_locked():
    locked = RecordingJobFactory(enqueue=True)
    other = RecordingJobFactory(enqueue=True)
    with row_held(RecordingJob.objects.filter(pk=locked.pk)):
        assert claim().pk == other.pk
        assert claim() is None
    assert claim().pk == locked.pk


def test_claimed_instances_are_the_instances_django_loads():
    """A claim builds its instances without `Model.__init__` where that is the same; every
    field must come out as Django's own query would give it, with the same types."""
    RecordingJobFactory.create_batch(2, enqueue=True, label_text="payload")
    claimed = claim_many(limit=2)
    assert len(claimed) == 2
    for job in claimed:
        loaded = RecordingJob.objects.get(pk=job.pk)
        for field in RecordingJob._meta.concrete_fields:
            mine, django = getattr(job, field.attname), getattr(loaded, field.attname)
            assert mine == django, field.name
            # (SQLite's RETURNING gives a REAL column's 0.0 as 0, as it did before.)
            if not isinstance(mine, int | float):
                assert type(mine) is type(django), field.name
            if isinstance(mine, datetime):
                assert mine.tzinfo == django.tzinfo, field.name
        assert (job._state.adding, job._state.db) == (False, "default")
        job.label_text = "saved"
        job.save(update_fields=["label_text"])  # an instance the ORM takes as its own
        assert RecordingJob.objects.get(pk=job.pk).label_text == "saved"


def test_claimed_instances_go_through_init_while_a_receiver_listens_for_it():
    """`post_init` (and `pre_init`) receivers see every instance a claim builds."""
    jobs = RecordingJobFactory.create_batch(2, enqueue=True)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_init.connect(receiver, sender=RecordingJob)
    try:
        claimed = claim_many(limit=2)
    finally:
        post_init.disconnect(receiver, sender=RecordingJob)
    assert sorted(seen) == sorted(job.pk for job in jobs) == sorted(j.pk for j in claimed)


def test_a_batch_of_outcomes_json_cannot_carry_is_still_one_statement_fenced_per_row():
    """Failures carry their error history (a list): such a batch takes the statement with a
    value per cell, and each row is still fenced by its own claim."""
    jobs = claimed_for_run(3)
    RecordingJob.objects.filter(pk=jobs[1].pk).update(attempts=2, claimed_by="other:1")
    boom = RuntimeError("boom")
    outcomes = [
        execution.Outcome(job, *endings.failure_outcome(job, boom, "tb"), took=0.1, exc=boom)
        for job in jobs
    ]
    with CaptureQueriesContext(connection) as queries:
        written = execution.record(outcomes, using="default")
    assert written == [True, False, True]
    assert len(outcome_writes(queries)) == 1
    assert states(jobs) == ["failed", "running", "failed"]
    assert RecordingJob.objects.get(pk=jobs[0].pk).error_history[-1]["message"] == "boom"


@needs_postgresql("prepared statements")
def test_a_batch_of_outcomes_is_the_same_statement_whatever_its_size():
    """One text (so one prepared statement, and psycopg's parsed form cached) for 2 rows or
    3, where a statement per batch size had to be parsed again past 50 parameters."""
    jobs = claimed_for_run(5)
    with CaptureQueriesContext(connection) as queries:
        assert execution.record([succeeded(job) for job in jobs[:2]], using="default") == [True] * 2
        assert execution.record([succeeded(job) for job in jobs[2:]], using="default") == [True] * 3
    first, second = outcome_writes(queries)
    assert first == second
    assert states(jobs) == ["succeeded"] * 5


@needs_postgresql("psycopg's timestamp loader")
def test_claims_load_timestamps_in_c_only_where_the_values_are_django_s():
    """psycopg's loader gives values the session's zone; Django's, the connection's. Only
    where those are the same zone does the engine use psycopg's."""
    engine = engine_for("default")
    connection.ensure_connection()
    assert engine._fast_timestamp_loader() is not None
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Kolkata'")
        try:
            assert engine._fast_timestamp_loader() is None
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")


@pytest.mark.django_db(transaction=True)
def test_a_claim_after_a_reconnect_runs_on_the_new_connection():
    """The engine keeps one cursor per connection: a new connection gets a new cursor."""
    RecordingJobFactory(enqueue=True)
    assert claim() is not None
    connection.close()
    RecordingJobFactory(enqueue=True)
    assert claim() is not None
    assert claim() is None
