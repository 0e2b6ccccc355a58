"""The claim statement: one row, runnable only, exclusive between sessions."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from jobs import timesource
from jobs.db import engine_for
from jobs.models import JobState
from tests.conftest import on_postgresql
from tests.factories import RecordingJobFactory
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


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_claim_skips_a_row_another_session_has_locked():
    locked = RecordingJobFactory(enqueue=True)
    other = RecordingJobFactory(enqueue=True)
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(RecordingJob.objects.select_for_update().filter(pk=locked.pk))
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    holding.wait(10)
    try:
        assert claim().pk == other.pk
        assert claim() is None
    finally:
        release.set()
        thread.join()
    assert claim().pk == locked.pk
