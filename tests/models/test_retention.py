"""Pruning: finished rows past their retention go, in batches; everything else stays."""

from datetime import timedelta

import pytest
from django.core.management import call_command

from jobs import batch, execution, timesource
from jobs.checks import check_settings, job_model_errors
from jobs.models import Batch, Dependency, JobQuerySet, JobState
from jobs.runtime.worker import WorkerLoop
from jobs.testing import drain
from tests.conftest import NOON, manage
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db

DEFAULTS = {"succeeded": 7, "failed": 30, "cancelled": 7}


def finished_days_ago(frozen, days: float, **fields) -> RecordingJob:
    """A job that finished `days` before NOON (succeeded unless fields say otherwise)."""
    frozen.now = NOON - timedelta(days=days)
    job = RecordingJobFactory(enqueue=True, **fields).run()
    frozen.now = NOON
    return job


def prune(batch: int = 1000) -> int:
    return JobQuerySet(model=RecordingJob).prune(RecordingJob.retention_policy(), batch=batch)


def remaining() -> set[int]:
    return set(RecordingJob.objects.values_list("pk", flat=True))


def test_finished_rows_past_their_state_retention_are_deleted_and_nothing_else(frozen):
    old_success = finished_days_ago(frozen, 8)
    recent_success = finished_days_ago(frozen, 6)
    old_failure = finished_days_ago(frozen, 20, fail=True)
    ancient_failure = finished_days_ago(frozen, 31, fail=True)
    frozen.now = NOON - timedelta(days=60)
    waiting = RecordingJobFactory(enqueue=True)
    frozen.now = NOON
    assert prune() == 2
    assert remaining() == {recent_success.pk, old_failure.pk, waiting.pk}
    assert old_success.pk not in remaining()
    assert ancient_failure.pk not in remaining()


def test_a_model_can_keep_its_rows_longer_or_forever(frozen, monkeypatch):
    kept = finished_days_ago(frozen, 400)
    monkeypatch.setattr(RecordingJob, "retention", {"succeeded": None})
    assert RecordingJob.retention_policy() == {**DEFAULTS, "succeeded": None}
    assert prune() == 0
    assert remaining() == {kept.pk}


def test_the_setting_changes_the_default_retention(frozen, settings):
    finished_days_ago(frozen, 2)
    settings.JOBS_RETENTION = {"succeeded": 1}
    assert RecordingJob.retention_policy() == {**DEFAULTS, "succeeded": 1}
    assert prune() == 1


def test_pruning_goes_in_batches_oldest_first(frozen):
    jobs = [finished_days_ago(frozen, days) for days in (12, 11, 10, 9, 8)]
    assert prune(batch=2) == 2
    assert remaining() == {job.pk for job in jobs[2:]}
    assert prune(batch=2) == 2
    assert prune(batch=2) == 1
    assert prune(batch=2) == 0


def test_the_prunejobs_command_deletes_everything_due(frozen, capsys):
    for days in (10, 9, 8):
        finished_days_ago(frozen, days)
    call_command("prunejobs", "--batch", "2")
    assert "testapp.RecordingJob: deleted 3 finished row(s)" in capsys.readouterr().out
    assert not RecordingJob.objects.exists()


def test_pruned_rows_take_their_edges_and_an_emptied_finished_batch_goes_too(frozen, capsys):
    frozen.now = NOON - timedelta(days=10)
    with batch() as old:
        parent = RecordingJobFactory(enqueue=True)
        child = RecordingJob.objects.create().enqueue(after=[parent])
    drain()
    frozen.now = NOON
    assert Dependency.objects.count() == 3  # parent -> child, and both in the batch
    call_command("prunejobs")
    out = capsys.readouterr().out
    assert "testapp.RecordingJob: deleted 2 finished row(s)" in out
    assert "batches: deleted 1 finished batch(es) whose members are gone" in out
    assert not Dependency.objects.exists()
    assert not Batch.objects.filter(pk=old.pk).exists()
    assert child.pk not in remaining()


def test_prunejobs_rejects_a_bad_batch_size():
    result = manage("prunejobs", "--batch", "0")
    assert result.returncode == 2
    assert "'0' is not a whole number of rows greater than 0" in result.stderr


def test_a_worker_prunes_during_its_heartbeat(frozen):
    finished_days_ago(frozen, 8)
    WorkerLoop()._chores.prune(timesource.now())
    assert not RecordingJob.objects.exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([7], "retention must be a dict"),
        ({"pending": 1}, "retention names 'pending'"),
        ({"failed": -1}, "retention for failed must be None or days >= 0"),
    ],
)
def test_a_bad_retention_setting_is_a_check_error(settings, value, fragment):
    settings.JOBS_RETENTION = value
    errors = check_settings()
    assert [error.id for error in errors] == ["jobs.E006"]
    assert fragment in errors[0].msg


def test_a_bad_model_retention_is_a_check_error(monkeypatch):
    monkeypatch.setattr(RecordingJob, "retention", {"succeeded": "a week"})
    assert [error.id for error in job_model_errors(RecordingJob)] == ["jobs.E006"]


def test_pending_and_running_rows_are_never_pruned(frozen):
    frozen.now = NOON - timedelta(days=90)
    RecordingJobFactory(enqueue=True)
    running = RecordingJobFactory(enqueue=True)
    execution.claim_for_run(running)
    frozen.now = NOON
    assert prune() == 0
    assert set(RecordingJob.objects.values_list("state", flat=True)) == {
        JobState.PENDING,
        JobState.RUNNING,
    }
