"""`Model.objects.enqueue(**fields)`: a job created already pending, in one statement."""

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs.db.postgresql import CHANNEL
from jobs.signals import job_enqueued
from tests.conftest import database_url, listen_notify
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db


def test_enqueue_through_the_manager_inserts_the_row_pending_in_one_statement(
    django_assert_max_num_queries,
):
    with CaptureQueriesContext(connection) as queries:
        job = RecordingJob.objects.enqueue(label_text="one", priority=5, queue="urgent")
    writes = [q["sql"] for q in queries if "recordingjob" in q["sql"].lower()]
    assert len(writes) == 1
    assert "INSERT INTO" in writes[0]  # on PostgreSQL, with its NOTIFY in the same statement
    row = RecordingJob.objects.get(pk=job.pk)
    assert (row.state, row.label_text, row.priority, row.queue) == ("pending", "one", 5, "urgent")
    assert None not in (row.requested_at, row.run_at)


def test_enqueue_through_the_manager_refuses_bad_options_and_unknown_fields():
    with pytest.raises(ValueError, match="priority 500 is out of range"):
        RecordingJob.objects.enqueue(label_text="x", priority=500)
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*'colour'"):
        RecordingJob.objects.enqueue(colour="red")
    assert not RecordingJob.objects.exists()


def test_enqueue_through_the_manager_sends_job_enqueued_with_the_saved_row():
    seen = []
    job_enqueued.connect(lambda job, **kwargs: seen.append(job.pk), weak=False, dispatch_uid="t")
    try:
        job = RecordingJob.objects.enqueue(label_text="signal")
    finally:
        job_enqueued.disconnect(dispatch_uid="t")
    assert seen == [job.pk]


@listen_notify
@pytest.mark.django_db(transaction=True)
def test_enqueue_through_the_manager_wakes_workers_when_its_transaction_commits():
    url = database_url().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        with transaction.atomic():
            RecordingJob.objects.enqueue(label_text="a", queue="mail")
            assert [n.payload for n in listener.notifies(timeout=0.3)] == []
        assert [n.payload for n in listener.notifies(timeout=0.3)] == ["mail testapp.RecordingJob"]
        with transaction.atomic():
            RecordingJob.objects.enqueue(label_text="b", queue="mail")
            transaction.set_rollback(True)
        assert [n.payload for n in listener.notifies(timeout=0.3)] == []
    assert list(RecordingJob.objects.values_list("label_text", flat=True)) == ["a"]
