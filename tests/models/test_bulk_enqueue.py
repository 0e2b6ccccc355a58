"""bulk_enqueue(): thousands of jobs in a few statements, validated before anything is written."""

from datetime import timedelta

import pytest
from django.db import transaction

from jobs import timesource
from jobs.errors import JobStateError
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from project.instances.models import InstanceProvision
from tests.factories import InstanceFactory, RecordingJobFactory
from tests.testapp.models import RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_bulk_enqueue_writes_pending_rows_with_their_fields_and_returns_them_with_ids(frozen):
    jobs = RecordingJob.objects.bulk_enqueue(
        RecordingJob(label_text=f"job {n}") for n in range(2500)
    )
    assert len({job.pk for job in jobs}) == 2500
    assert None not in {job.pk for job in jobs}
    row = RecordingJob.objects.get(pk=jobs[-1].pk)
    assert (row.state, row.label_text, row.requested_at, row.run_at) == (
        JobState.PENDING,
        "job 2499",
        frozen.now,
        frozen.now,
    )


def test_each_row_keeps_its_own_values_where_rows_differ():
    """Columns equal in every row are sent once; these differ, in value or only in type."""
    given = [
        RecordingJob(label_text="same", sleep_seconds=0, fail=False),
        RecordingJob(label_text="same", sleep_seconds=0.0, fail=True),
        RecordingJob(label_text="other", sleep_seconds=0.5, fail=False),
    ]
    jobs = RecordingJob.objects.bulk_enqueue(given)
    rows = RecordingJob.objects.in_bulk([job.pk for job in jobs])
    assert [
        (rows[job.pk].label_text, rows[job.pk].sleep_seconds, rows[job.pk].fail) for job in jobs
    ] == [("same", 0.0, False), ("same", 0.0, True), ("other", 0.5, False)]
    assert all(row.error_history == [] for row in rows.values())


def test_domain_foreign_keys_are_written_per_row():
    instances = [InstanceFactory() for _ in range(3)]
    jobs = InstanceProvision.objects.bulk_enqueue(
        InstanceProvision(instance=instance) for instance in instances
    )
    assert [InstanceProvision.objects.get(pk=job.pk).instance for job in jobs] == instances


def test_jobs_given_their_own_primary_keys_keep_them():
    jobs = RecordingJob.objects.bulk_enqueue([RecordingJob(pk=9001), RecordingJob(pk=9002)])
    assert [job.pk for job in jobs] == [9001, 9002]
    assert set(RecordingJob.objects.pending().values_list("pk", flat=True)) == {9001, 9002}


def test_jobs_enqueued_in_a_transaction_that_rolls_back_are_never_written():
    with transaction.atomic():
        RecordingJob.objects.bulk_enqueue(RecordingJob() for _ in range(100))
        transaction.set_rollback(True)
    assert not RecordingJob.objects.exists()


def test_bulk_enqueue_takes_the_options_enqueue_takes():
    RecordingJob.objects.bulk_enqueue(
        [RecordingJob(), RecordingJob()], delay=timedelta(hours=1), priority=7, queue="later"
    )
    assert set(RecordingJob.objects.values_list("priority", "queue")) == {(7, "later")}
    assert RecordingJob.objects.runnable().count() == 0
    assert RecordingJob.objects.runnable(timesource.now() + timedelta(hours=2)).count() == 2


def test_bulk_enqueued_jobs_run_once_each():
    RecordingJob.objects.bulk_enqueue(RecordingJob() for _ in range(30))
    assert WorkerLoop(threads=4, burst=True).run() == 30
    assert RecordingJob.objects.succeeded().count() == 30


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda: RecordingJobFactory(), "new, unsaved RecordingJob instances"),
        (lambda: UrgentJob(), "new, unsaved RecordingJob instances"),
        (lambda: "not a job", "new, unsaved RecordingJob instances"),
    ],
)
def test_a_bad_item_is_refused_and_nothing_is_written(bad, reason):
    with pytest.raises(JobStateError, match=reason):
        RecordingJob.objects.bulk_enqueue([RecordingJob(), bad(), RecordingJob()])
    assert RecordingJob.objects.pending().count() == 0


def test_a_bad_option_is_refused_and_nothing_is_written():
    with pytest.raises(ValueError, match="delay must not be negative"):
        RecordingJob.objects.bulk_enqueue([RecordingJob()], delay=-1)
    assert not RecordingJob.objects.exists()
