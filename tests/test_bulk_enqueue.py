"""bulk_enqueue(): thousands of jobs in a few statements, validated before anything is written."""

from datetime import timedelta

import pytest

from jobs import clock
from jobs.errors import JobStateError
from jobs.models import JobState
from jobs.worker import Worker
from tests.factories import RecordingJobFactory
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


def test_bulk_enqueue_takes_the_options_enqueue_takes():
    RecordingJob.objects.bulk_enqueue(
        [RecordingJob(), RecordingJob()], delay=timedelta(hours=1), priority=7, queue="later"
    )
    assert set(RecordingJob.objects.values_list("priority", "queue")) == {(7, "later")}
    assert RecordingJob.objects.runnable().count() == 0
    assert RecordingJob.objects.runnable(clock.now() + timedelta(hours=2)).count() == 2


def test_bulk_enqueued_jobs_run_once_each():
    RecordingJob.objects.bulk_enqueue(RecordingJob() for _ in range(30))
    assert Worker(threads=4, burst=True).run() == 30
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
