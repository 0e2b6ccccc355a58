"""`enqueue(after=[...])`: a child waits, no claim sees it, and it runs once every parent has
succeeded; a parent that fails for good or is cancelled cancels it, naming itself, and down
the graph; requeueing that parent brings the children back. In one process here (the
worker's own outcome path, through `drain()`); tests/integration/test_workflow_workers.py
runs the same graphs over real worker processes."""

import pytest
from django.db import transaction

from jobs.errors import DuplicateJob, JobNotRunnable, JobStateError
from jobs.models import JobState
from jobs.models.dependency import PARENT_ENDED, Dependency
from jobs.testing import drain
from tests.testapp.models import Effect, RecordingJob, UniqueJob, UrgentJob

pytestmark = pytest.mark.django_db(transaction=True)


def job(**fields) -> RecordingJob:
    return RecordingJob.objects.create(**fields)


def refreshed(*jobs):
    for one in jobs:
        one.refresh_from_db()
    return jobs


def test_a_child_waits_for_its_parent_and_runs_after_it():
    a = job(label_text="a").enqueue()
    b = job(label_text="b").enqueue(after=[a])
    assert b.state == JobState.WAITING
    assert RecordingJob.objects.runnable().filter(pk=b.pk).count() == 0
    with pytest.raises(JobNotRunnable, match="waiting"):
        RecordingJob.objects.get(pk=b.pk).run()

    drain()

    a, b = refreshed(a, b)
    assert (a.state, b.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED)
    assert b.started_at >= a.finished_at
    assert list(Effect.objects.order_by("pk").values_list("job_id", flat=True)) == [a.pk, b.pk]


def test_a_child_of_two_parents_of_two_models_waits_for_both():
    a = job(label_text="a").enqueue()
    u = UrgentJob.objects.create(note="u").enqueue()
    c = job(label_text="c").enqueue(after=[a, u])
    assert c.state == JobState.WAITING

    a.run()
    assert refreshed(c)[0].state == JobState.WAITING  # one parent left
    u.run()
    assert refreshed(c)[0].state == JobState.PENDING
    assert set(Dependency.objects.values_list("parent_state", flat=True)) == {"succeeded"}


def test_a_parent_that_already_succeeded_does_not_delay_the_child():
    a = job().enqueue()
    a.run()
    b = job().enqueue(after=[a])
    assert b.state == JobState.PENDING
    assert RecordingJob.objects.runnable().filter(pk=b.pk).exists()


def test_a_failed_parent_cancels_the_graph_below_it_naming_itself_and_requeue_revives_it():
    a = job(label_text="a", fail=True).enqueue()  # max_attempts 1: fails for good
    b = job(label_text="b").enqueue(after=[a])
    c = job(label_text="c").enqueue(after=[a, b])
    d = job(label_text="d").enqueue(after=[c])

    drain()

    a, b, c, d = refreshed(a, b, c, d)
    assert a.state == JobState.FAILED
    assert [x.state for x in (b, c, d)] == [JobState.CANCELLED] * 3
    assert b.error_type == PARENT_ENDED
    assert b.error_message.startswith(f"testapp.RecordingJob#{a.pk} failed")
    assert d.error_message.startswith(f"testapp.RecordingJob#{c.pk} cancelled")
    assert Effect.objects.filter(job_id__in=[b.pk, c.pk, d.pk]).count() == 0

    RecordingJob.objects.filter(pk=a.pk).update(fail=False)
    a.requeue()
    b, c, d = refreshed(b, c, d)
    assert [x.state for x in (b, c, d)] == [JobState.WAITING] * 3
    assert (b.error_type, b.finished_at) == ("", None)

    drain()

    assert [x.state for x in refreshed(a, b, c, d)] == [JobState.SUCCEEDED] * 4
    order = list(Effect.objects.order_by("pk").values_list("job_id", flat=True))
    assert order[-4:] == [a.pk, b.pk, c.pk, d.pk]


def test_a_child_held_by_two_failed_parents_comes_back_only_when_both_are_requeued():
    a = job(fail=True).enqueue()
    b = job(fail=True).enqueue()
    c = job().enqueue(after=[a, b])
    drain()
    assert refreshed(c)[0].state == JobState.CANCELLED

    a.requeue()
    assert refreshed(c)[0].state == JobState.CANCELLED  # b still holds it
    b.requeue()
    assert refreshed(c)[0].state == JobState.WAITING


def test_cancelling_a_parent_cancels_its_waiting_children():
    a = job().enqueue()
    b = job().enqueue(after=[a])
    a.cancel()
    (b,) = refreshed(b)
    assert b.state == JobState.CANCELLED
    assert b.error_message.startswith(f"testapp.RecordingJob#{a.pk} cancelled")


def test_a_parent_already_failed_at_enqueue_cancels_the_child_at_once_and_requeue_revives():
    a = job(fail=True).enqueue()
    a.run()
    b = job().enqueue(after=[a])
    assert b.state == JobState.CANCELLED
    assert b.error_type == PARENT_ENDED
    a.requeue()
    assert refreshed(b)[0].state == JobState.WAITING


def test_cancelling_a_waiting_child_is_an_operators_cancel_and_a_requeue_waits_again():
    a = job().enqueue()
    b = job().enqueue(after=[a])
    b.cancel()
    assert b.state == JobState.CANCELLED
    assert b.error_type == ""
    b.requeue()
    assert b.state == JobState.WAITING  # its parent has not succeeded yet
    a.run()
    assert refreshed(b)[0].state == JobState.PENDING


def test_a_rescued_parent_that_fails_for_good_cancels_its_children():
    from datetime import timedelta

    from jobs import timesource

    a = job().enqueue()
    b = job().enqueue(after=[a])
    RecordingJob.objects.filter(pk=a.pk).update(
        state=JobState.RUNNING, attempts=1, claimed_by="gone:1",
        lease_expires_at=timesource.now() - timedelta(seconds=1),
    )  # fmt: skip
    assert RecordingJob.objects.rescue() == 1
    assert refreshed(b)[0].state == JobState.CANCELLED


def test_the_edges_are_written_with_the_child_in_one_transaction():
    a = job().enqueue()

    def enqueue_then_roll_back() -> None:
        with transaction.atomic():
            job().enqueue(after=[a])
            raise RuntimeError

    with pytest.raises(RuntimeError):
        enqueue_then_roll_back()
    assert Dependency.objects.count() == 0
    assert RecordingJob.objects.filter(state=JobState.WAITING).count() == 0


@pytest.mark.parametrize(
    ("parents", "message"),
    [
        (lambda: [RecordingJob(label_text="unsaved")], "saved jobs"),
        (lambda: [Effect(job_model="x", job_id=1, attempt=1)], "only wait on jobs"),
    ],
)
def test_a_child_can_only_wait_on_saved_jobs_and_nothing_is_written_otherwise(parents, message):
    child = RecordingJob(label_text="child")
    with pytest.raises(JobStateError, match=message):
        child.enqueue(after=parents())
    assert child._state.adding
    assert child.state == JobState.NEW
    assert RecordingJob.objects.count() == 0
    assert Dependency.objects.count() == 0


def test_a_deleted_parent_is_refused_by_name_so_no_cycle_can_form():
    a = job().enqueue()
    pk = a.pk
    RecordingJob.objects.filter(pk=pk).delete()
    b = job()
    with pytest.raises(JobStateError, match=f"testapp.RecordingJob#{pk}: it does not exist"):
        b.enqueue(after=[a])
    assert refreshed(b)[0].state == JobState.NEW


def test_a_waiting_job_counts_as_active_for_unique_on():
    a = job().enqueue()
    UniqueJob.objects.create(account="acme", report="r").enqueue(after=[a])
    with pytest.raises(DuplicateJob):
        UniqueJob.objects.create(account="acme", report="r").enqueue()


def test_objects_enqueue_takes_after_too():
    a = job().enqueue()
    b = RecordingJob.objects.enqueue(label_text="b", after=[a])
    assert b.state == JobState.WAITING
    a.run()
    assert refreshed(b)[0].state == JobState.PENDING
