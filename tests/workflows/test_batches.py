"""`with batch(on_finish=...)`: every job enqueued in the block joins; the callback becomes
pending exactly once, when the block has closed and every member has ended, and reads the
batch's counts and members. In one process here; the SIGKILL storm over real workers is in
tests/integration/test_workflow_workers.py."""

import pytest
from django.db import transaction

from jobs import batch
from jobs.errors import ConfigurationError, JobStateError
from jobs.models import Batch, JobState
from jobs.testing import drain
from tests.testapp.models import BatchReport, Effect, RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_callback_waits_for_every_member_then_runs_once_and_sees_the_counts():
    with batch(on_finish=BatchReport(), description="nightly import") as imports:
        for n in range(5):
            RecordingJob.objects.create(label_text=f"row {n}", fail=n == 4).enqueue()
        UrgentJob.objects.enqueue(note="another model")
        RecordingJob.objects.bulk_enqueue([RecordingJob(label_text="bulk")])
    report = imports.on_finish()
    assert report.state == JobState.WAITING
    assert (imports.total, imports.state) == (7, "running")

    drain()

    imports.refresh_from_db()
    report.refresh_from_db()
    assert imports.state == "finished"
    assert (imports.succeeded, imports.failed, imports.cancelled) == (6, 1, 0)
    assert report.state == JobState.SUCCEEDED
    assert report.seen == "6/1/0 of 7, 7 members"
    assert Effect.objects.filter(job_model="testapp.BatchReport").count() == 1
    last_member = max(m.finished_at for m in imports.members())
    assert report.started_at >= last_member
    assert imports.members_by_state() == {"succeeded": 6, "failed": 1}
    assert "test_batches.py" in imports.created_by


def test_members_finishing_before_the_block_ends_do_not_finish_the_batch():
    with batch(on_finish=BatchReport()) as early:
        RecordingJob.objects.create().enqueue().run()
        early.refresh_from_db()
        assert (early.succeeded, early.finished_at) == (1, None)
        RecordingJob.objects.create().enqueue()
    assert early.on_finish().state == JobState.WAITING
    drain()
    early.refresh_from_db()
    assert early.finished_at is not None
    assert early.succeeded == 2


def test_an_empty_batch_finishes_when_its_block_ends():
    with batch(on_finish=BatchReport()) as empty:
        pass
    assert empty.state == "finished"
    assert empty.on_finish().state == JobState.PENDING
    drain()
    assert BatchReport.objects.get().seen == "0/0/0 of 0, 0 members"


def test_a_batch_without_a_callback_still_counts():
    with batch() as plain:
        RecordingJob.objects.create().enqueue()
    drain()
    plain.refresh_from_db()
    assert (plain.total, plain.succeeded, plain.state) == (1, 1, "finished")
    assert plain.on_finish() is None


def test_cancelled_members_count_and_a_member_requeued_before_the_end_counts_once():
    with batch(on_finish=BatchReport()) as mixed:
        cancelled = RecordingJob.objects.create().enqueue()
        flaky = RecordingJob.objects.create(fail=True).enqueue()
        RecordingJob.objects.create(sleep_seconds=0).enqueue(run_at=None, delay=3600)
    cancelled.cancel()
    flaky.run()
    mixed.refresh_from_db()
    assert (mixed.cancelled, mixed.failed) == (1, 1)
    RecordingJob.objects.filter(pk=flaky.pk).update(fail=False)
    flaky.requeue()
    mixed.refresh_from_db()
    assert mixed.failed == 0  # its ending is forgotten: it will end again
    RecordingJob.objects.scheduled().retry_now()
    drain()
    mixed.refresh_from_db()
    assert (mixed.succeeded, mixed.failed, mixed.cancelled, mixed.state) == (2, 0, 1, "finished")
    assert Effect.objects.filter(job_model="testapp.BatchReport").count() == 1


def test_jobs_a_member_enqueues_do_not_join_unless_it_says_so():
    with batch() as outer:
        RecordingJob.objects.create(behaviour="chain").enqueue()
    drain()
    outer.refresh_from_db()
    assert (outer.total, outer.state) == (1, "finished")
    assert RecordingJob.objects.count() == 3

    with batch() as grown:
        member = RecordingJob.objects.create().enqueue()
    with Batch.objects.of(member).adding():
        RecordingJob.objects.create(label_text="follow-up").enqueue()
    grown.refresh_from_db()
    assert grown.total == 2


def test_a_finished_batch_takes_no_new_members_and_the_refused_job_is_not_written():
    with batch() as done:
        pass
    with pytest.raises(JobStateError, match="has finished"), done.adding():
        RecordingJob(label_text="late").enqueue()
    assert not RecordingJob.objects.filter(label_text="late").exists()


def test_a_batch_opened_in_a_transaction_that_rolls_back_leaves_nothing():
    def open_then_roll_back() -> None:
        with transaction.atomic():
            with batch(on_finish=BatchReport()):
                RecordingJob.objects.create().enqueue()
            raise RuntimeError

    with pytest.raises(RuntimeError):
        open_then_roll_back()
    assert Batch.objects.count() == 0
    assert BatchReport.objects.count() == 0
    assert RecordingJob.objects.count() == 0


def test_on_finish_must_be_a_job():
    with pytest.raises(ConfigurationError, match="takes a job"), batch(on_finish="report"):
        pass
    assert Batch.objects.count() == 0
