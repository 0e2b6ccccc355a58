"""jobs.testing: inline mode, drain, the enqueue assertions, the fixtures and the factory base."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from jobs import signals
from jobs.models import JobState
from jobs.testing import (
    DrainLimitReached,
    InlineJobFailed,
    assert_enqueued,
    assert_not_enqueued,
    captured_jobs,
    drain,
    draining,
    run_committed,
    run_jobs_inline,
)
from project.instances.models import Instance, InstanceProvision
from tests.conftest import NOON, manage
from tests.factories import InstanceFactory, RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import Boom, Effect, RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db


def performed() -> list[str]:
    """Which jobs performed, in order, as `app.Model#pk`."""
    return [f"{e.job_model}#{e.job_id}" for e in Effect.objects.order_by("pk")]


def state_of(job) -> str:
    job.refresh_from_db()
    return job.state


# Inline mode


def test_without_inline_mode_an_enqueued_job_waits_for_a_worker():
    job = RecordingJobFactory(enqueue=True)
    assert state_of(job) == JobState.PENDING
    assert performed() == []


@override_settings(JOBS_RUN_INLINE=True)
def test_the_setting_runs_each_job_as_it_is_enqueued():
    job = RecordingJobFactory(enqueue=True)
    assert performed() == [job.label]
    assert job.state == JobState.PENDING, "the caller's instance is left as it enqueued it"
    assert state_of(job) == JobState.SUCCEEDED


def test_the_context_manager_runs_jobs_enqueued_inside_it_and_lists_them():
    before = RecordingJobFactory(enqueue=True)
    with run_jobs_inline() as inline:
        job = RecordingJobFactory(enqueue=True)
    after = RecordingJobFactory(enqueue=True)
    assert performed() == [job.label]
    assert [(ran.pk, ran.state) for ran in inline.ran] == [(job.pk, JobState.SUCCEEDED)]
    assert (state_of(before), state_of(after)) == (JobState.PENDING, JobState.PENDING)


@run_jobs_inline()
def test_the_decorator_runs_jobs_for_the_whole_test():
    first, second = RecordingJobFactory(enqueue=True), UrgentJobFactory(enqueue=True)
    assert performed() == [first.label, second.label]


def test_a_view_test_sees_the_effects_of_the_job_the_view_enqueued(client):
    """The view enqueues in its own atomic() block: the job runs when the request ends."""
    with run_jobs_inline():
        response = client.post(reverse("instance-create"), {"name": "web-1"})
    assert response.status_code == 202
    instance = Instance.objects.get()
    assert instance.state == Instance.State.READY
    assert InstanceProvision.objects.get().state == JobState.SUCCEEDED


def test_a_job_enqueued_in_a_transaction_runs_only_once_it_commits():
    with run_jobs_inline():
        with transaction.atomic():
            job = RecordingJobFactory(enqueue=True)
            assert performed() == []
        run_committed()
        assert performed() == [job.label]


@pytest.mark.django_db(transaction=True)
def test_a_job_enqueued_in_a_real_transaction_runs_at_its_commit():
    with run_jobs_inline():
        with transaction.atomic():
            job = RecordingJobFactory(enqueue=True)
            assert performed() == []
        assert performed() == [job.label]


def enqueue_then_roll_back() -> None:
    with transaction.atomic():
        RecordingJobFactory(enqueue=True)
        raise RuntimeError("changed my mind")


def test_a_rolled_back_enqueue_never_runs():
    with run_jobs_inline() as inline:
        with pytest.raises(RuntimeError):
            enqueue_then_roll_back()
        kept = RecordingJobFactory(enqueue=True)
    assert performed() == [kept.label]
    assert [job.pk for job in inline.ran] == [kept.pk]
    assert RecordingJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_enqueue_never_runs_in_a_real_transaction():
    with run_jobs_inline() as inline, pytest.raises(RuntimeError):
        enqueue_then_roll_back()
    assert (performed(), inline.ran) == ([], [])
    assert not RecordingJob.objects.exists()


def assert_children_run_after_their_parent() -> None:
    """A job that enqueues two more in its own transaction, run inline: all three run."""
    with run_jobs_inline() as inline:
        parent = RecordingJobFactory(behaviour="chain", enqueue=True)
    children = list(RecordingJob.objects.exclude(pk=parent.pk).order_by("pk"))
    assert performed() == [parent.label, *(child.label for child in children)]
    assert [job.pk for job in inline.ran] == [parent.pk, *(child.pk for child in children)]
    assert len(children) == 2
    assert children[0].started_at >= RecordingJob.objects.get(pk=parent.pk).finished_at


def test_jobs_enqueued_by_a_job_run_inline_run_after_it():
    assert_children_run_after_their_parent()


@pytest.mark.django_db(transaction=True)
def test_jobs_enqueued_by_a_job_run_inline_run_after_it_in_real_transactions():
    assert_children_run_after_their_parent()


def test_bulk_enqueued_jobs_all_run_in_order():
    with run_jobs_inline():
        jobs = RecordingJob.objects.bulk_enqueue(RecordingJob(label_text=f"{n}") for n in range(3))
    assert performed() == [job.label for job in jobs]


def test_a_scheduled_job_stays_pending_unless_asked_to_run_anyway(frozen):
    with run_jobs_inline() as inline:
        later = RecordingJobFactory(enqueue__delay=600)
    assert (inline.ran, state_of(later)) == ([], JobState.PENDING)
    with run_jobs_inline(run_scheduled=True):
        anyway = RecordingJobFactory(enqueue__delay=600)
    assert performed() == [anyway.label]
    assert drain(now=NOON + timedelta(minutes=10)) == [later]


def test_a_failing_job_is_recorded_on_its_row_not_raised():
    with run_jobs_inline() as inline:
        job = RecordingJobFactory(fail=True, enqueue=True)
    assert (state_of(job), job.error_type) == (JobState.FAILED, "tests.testapp.models.Boom")
    [(failed, exception)] = inline.failures
    assert (failed.pk, type(exception)) == (job.pk, Boom)


def run_two_failing_jobs_inline(enqueued: list) -> None:
    with run_jobs_inline(raise_errors=True):
        RecordingJobFactory(enqueue=True)
        enqueued.append(RecordingJobFactory(fail=True, label_text="bad", enqueue=True))
        enqueued.append(
            RecordingJobFactory(fail=True, label_text="again", max_attempts=2, enqueue=True)
        )


def test_raise_errors_ends_the_block_with_each_failure_once_recorded():
    enqueued = []
    with pytest.raises(InlineJobFailed) as raised:
        run_two_failing_jobs_inline(enqueued)
    job, retried = enqueued
    message = str(raised.value)
    assert message.startswith(
        "2 job(s) run inline failed:\n"
        f"- {job.label} (failed, attempt 1 of 1): tests.testapp.models.Boom: boom in bad\n"
        "Traceback (most recent call last):\n"
    )
    assert (
        f"- {retried.label} (will retry, attempt 1 of 2): tests.testapp.models.Boom: "
        "boom in again\n"
    ) in message
    assert isinstance(raised.value.__cause__, Boom)
    assert (state_of(job), state_of(retried)) == (JobState.FAILED, JobState.PENDING)


def test_a_job_cancelled_before_its_commit_does_not_run():
    with run_jobs_inline() as inline, transaction.atomic():
        RecordingJobFactory(enqueue=True).cancel()
    assert (performed(), inline.ran) == ([], [])


# assert_enqueued / assert_not_enqueued


def test_assert_enqueued_passes_and_returns_the_matching_rows():
    instance = InstanceFactory(name="web-1")
    job = InstanceProvision.objects.create(instance=instance).enqueue()
    InstanceProvision.objects.create(instance=InstanceFactory())  # new: not enqueued
    assert assert_enqueued(InstanceProvision, instance=instance) == [job]
    assert assert_enqueued(InstanceProvision, count=1, instance__name="web-1") == [job]
    assert_not_enqueued(InstanceProvision, instance__name="web-2")
    assert_not_enqueued(UrgentJob)


def test_assert_enqueued_counts_jobs_that_already_ran():
    job = RecordingJobFactory(enqueue=True).run()
    assert assert_enqueued(RecordingJob, state=JobState.SUCCEEDED) == [job]


def test_assert_enqueued_failure_lists_what_was_enqueued_and_how_it_differs():
    first = RecordingJobFactory(label_text="a", enqueue=True)
    second = RecordingJobFactory(label_text="b", enqueue__queue="slow")
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(RecordingJob, label_text="b", queue="default")
    assert str(failure.value) == (
        "expected at least 1 testapp.RecordingJob job enqueued with label_text='b', "
        "queue='default', found 0.\n"
        "Enqueued testapp.RecordingJob jobs:\n"
        f"  {first.label} (pending): label_text='a' (expected 'b')\n"
        f"  {second.label} (pending): queue='slow' (expected 'default')"
    )


def test_assert_enqueued_with_a_count_fails_on_too_many_and_explains_lookups():
    jobs = [RecordingJobFactory(label_text=f"job-{n}", enqueue=True) for n in range(2)]
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(RecordingJob, count=1, label_text__startswith="job")
    assert str(failure.value) == (
        "expected exactly 1 testapp.RecordingJob job enqueued with "
        "label_text__startswith='job', found 2.\n"
        "Enqueued testapp.RecordingJob jobs:\n"
        f"  {jobs[0].label} (pending)\n"
        f"  {jobs[1].label} (pending)"
    )
    with pytest.raises(AssertionError, match="label_text__startswith does not match 'x'"):
        assert_enqueued(RecordingJob, label_text__startswith="x")


def test_assert_enqueued_failure_says_when_nothing_was_enqueued():
    RecordingJobFactory()  # created, never enqueued
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(RecordingJob)
    assert str(failure.value) == (
        "expected at least 1 testapp.RecordingJob job enqueued, found 0.\n"
        "No testapp.RecordingJob job was enqueued."
    )


def test_assert_not_enqueued_failure_lists_the_matching_rows():
    job = UrgentJobFactory(note="x", enqueue=True)
    with pytest.raises(AssertionError) as failure:
        assert_not_enqueued(UrgentJob, note="x")
    assert str(failure.value) == (
        f"expected no testapp.UrgentJob job enqueued with note='x', found:\n  {job.label} (pending)"
    )


# captured_jobs


def test_captured_jobs_lists_what_the_block_enqueued_in_order_as_enqueued():
    RecordingJobFactory(enqueue=True)
    with run_jobs_inline(), captured_jobs() as captured:
        urgent = UrgentJobFactory(enqueue=True)
        bulk = RecordingJob.objects.bulk_enqueue([RecordingJob(label_text="bulk")])
    assert [(type(job), job.pk) for job in captured] == [
        (UrgentJob, urgent.pk),
        (RecordingJob, bulk[0].pk),
    ]
    assert {job.state for job in captured} == {JobState.PENDING}, "copies, as enqueued"
    assert state_of(urgent) == JobState.SUCCEEDED


def test_captured_jobs_stops_listening_when_the_block_ends():
    with captured_jobs() as captured:
        pass
    RecordingJobFactory(enqueue=True)
    assert captured == []


# drain


def test_drain_runs_every_runnable_job_by_priority_then_run_at(frozen):
    low = RecordingJobFactory(enqueue__priority=-1)
    old = RecordingJobFactory(enqueue=True)
    frozen.now = NOON + timedelta(seconds=1)
    new = RecordingJobFactory(enqueue=True)
    urgent = UrgentJobFactory(enqueue=True)  # priority 10, another model
    ran = drain()
    assert [job.label for job in ran] == [urgent.label, old.label, new.label, low.label]
    assert {job.state for job in ran} == {JobState.SUCCEEDED}
    assert drain() == []


def test_drain_leaves_new_and_scheduled_jobs_until_now_moves(frozen):
    RecordingJobFactory()
    later = RecordingJobFactory(enqueue__delay=60)
    assert drain() == []
    assert drain(now=NOON + timedelta(seconds=60)) == [later]


def test_drain_runs_the_jobs_that_drained_jobs_enqueue():
    parent = RecordingJobFactory(behaviour="chain", enqueue=True)
    ran = drain()
    assert ran[0].pk == parent.pk
    assert len(ran) == 3
    assert RecordingJob.objects.succeeded().count() == 3


def test_drain_runs_a_retry_only_once_its_backoff_is_over(frozen):
    job = RecordingJobFactory(fail=True, max_attempts=3, enqueue=True)
    [first] = drain()
    assert (first.state, first.attempts) == (JobState.PENDING, 1)
    assert drain() == []
    ran = drain(now=NOON + timedelta(hours=2))
    assert [(j.pk, j.attempts, j.state) for j in ran] == [
        (job.pk, 2, JobState.PENDING),
        (job.pk, 3, JobState.FAILED),
    ]


def test_drain_stops_after_max_jobs():
    jobs = [RecordingJobFactory(enqueue=True) for _ in range(3)]
    assert drain(max_jobs=2) == jobs[:2]
    assert drain() == jobs[2:]


def test_drain_takes_only_the_given_models_and_queues():
    recording = RecordingJobFactory(enqueue=True)
    urgent = UrgentJobFactory(enqueue=True)
    elsewhere = UrgentJobFactory(enqueue__queue="elsewhere")
    assert drain(models=[RecordingJob]) == [recording]
    assert drain(queues=["elsewhere"]) == [elsewhere]
    assert drain() == [urgent]


def test_drain_stops_a_job_that_never_ends_with_a_clear_error(monkeypatch, frozen):
    monkeypatch.setattr(draining, "RUNAWAY_LIMIT", 3)
    job = RecordingJobFactory(behaviour="snooze", enqueue=True)
    with pytest.raises(DrainLimitReached, match=rf"ran 3 jobs and {job.label} is still runnable"):
        drain(now=NOON + timedelta(days=1))


# The pytest fixtures (jobs.testing.pytest_plugin, enabled in tests/conftest.py)


def test_the_jobs_inline_fixture_runs_jobs_as_they_commit(jobs_inline):
    job = RecordingJobFactory(enqueue=True)
    assert [ran.pk for ran in jobs_inline.ran] == [job.pk]


def test_the_drain_jobs_and_enqueued_jobs_fixtures(drain_jobs, enqueued_jobs):
    job = RecordingJobFactory(enqueue=True)
    assert [captured.pk for captured in enqueued_jobs] == [job.pk]
    assert drain_jobs() == [job]


# jobs.testing.factories.JobFactory


def test_factory_creates_new_rows_and_enqueues_on_request(frozen):
    assert RecordingJobFactory().state == JobState.NEW
    assert RecordingJobFactory(enqueue=True).state == JobState.PENDING
    delayed = RecordingJobFactory(enqueue__delay=30, enqueue__priority=5)
    assert (delayed.state, delayed.run_at, delayed.priority) == (
        JobState.PENDING,
        NOON + timedelta(seconds=30),
        5,
    )
    assert RecordingJobFactory(enqueue=False, enqueue__delay=30).state == JobState.NEW
    assert RecordingJobFactory.build(enqueue=True).pk is None


def inline_receiver_connected() -> bool:
    from jobs.testing import inline

    return any(receiver[0][0] == inline.DISPATCH_UID for receiver in signals.job_enqueued.receivers)


def test_inline_mode_listens_only_while_a_block_is_open_or_the_setting_is_on(settings):
    assert not inline_receiver_connected()
    with run_jobs_inline():
        assert inline_receiver_connected()
    assert not inline_receiver_connected()
    with override_settings(JOBS_RUN_INLINE=True):
        assert inline_receiver_connected()
    assert not inline_receiver_connected()


@pytest.mark.integration
def test_a_process_that_never_turns_inline_mode_on_never_imports_it():
    result = manage("shell", "-c", "import sys; print('jobs.testing.inline' in sys.modules)")
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
