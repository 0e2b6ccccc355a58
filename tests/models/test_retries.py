"""Retry rules, snoozing and the per-attempt error history, with the clock moved, not slept."""

from datetime import timedelta

import pytest
from django.db import models
from django.test.utils import isolate_apps

from jobs.checks import job_model_errors
from jobs.joblog import ERROR_HISTORY_LIMIT
from jobs.models import Job, JobState
from tests.conftest import NOON
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db


def run_until_done(job: RecordingJob, frozen) -> RecordingJob:
    """Run each retry when it falls due, moving the clock instead of waiting."""
    job.run()
    job.refresh_from_db()
    while job.state == JobState.PENDING:
        frozen.now = job.run_at
        job.run()
        job.refresh_from_db()
    return job


def test_every_failed_attempt_is_kept_in_the_history(frozen):
    job = run_until_done(RecordingJobFactory(enqueue=True, fail=True, max_attempts=3), frozen)
    assert (job.state, job.attempts) == (JobState.FAILED, 3)
    assert [entry["attempt"] for entry in job.error_history] == [1, 2, 3]
    first = job.error_history[0]
    assert first["type"] == "tests.testapp.models.Boom"
    assert first["message"].startswith("boom in")
    assert first["at"] == NOON.isoformat()
    assert first["worker"] == job.claimed_by
    assert "raise Boom" in first["traceback"]


def test_the_history_keeps_only_the_latest_failures(frozen):
    job = run_until_done(RecordingJobFactory(enqueue=True, fail=True, max_attempts=12), frozen)
    assert len(job.error_history) == ERROR_HISTORY_LIMIT
    assert [entry["attempt"] for entry in job.error_history] == list(range(3, 13))


def test_an_exception_in_discard_on_fails_the_job_at_once(frozen):
    job = RecordingJobFactory(enqueue=True, behaviour="forbidden", max_attempts=5).run()
    assert (job.state, job.attempts, job.error_type) == (JobState.FAILED, 1, "PermissionError")


def test_an_exception_outside_retry_on_fails_the_job_at_once(frozen):
    job = RecordingJobFactory(enqueue=True, behaviour="value_error", max_attempts=5).run()
    assert (job.state, job.attempts, job.error_type) == (JobState.FAILED, 1, "ValueError")


def test_an_exception_in_retry_on_is_retried_while_attempts_remain(frozen):
    job = RecordingJobFactory(enqueue=True, fail=True, max_attempts=5).run()
    assert (job.state, job.attempts) == (JobState.PENDING, 1)


def test_snooze_runs_the_job_again_later_without_counting_an_attempt_or_an_error(frozen):
    job = RecordingJobFactory(enqueue=True, behaviour="snooze", max_attempts=1).run()
    job.refresh_from_db()
    assert (job.state, job.attempts, job.run_at) == (
        JobState.PENDING,
        0,
        NOON + timedelta(seconds=30),
    )
    assert (job.error_type, job.error_history, job.claimed_by) == ("", [], "")
    frozen.now = job.run_at
    job.run()
    assert Effect.objects.filter(job_id=job.pk).count() == 2


@pytest.mark.parametrize("rule", ["retry_on", "discard_on"])
@isolate_apps("tests.testapp")
def test_retry_rules_that_are_not_exception_classes_are_check_errors(rule):
    class Sloppy(Job):
        note = models.TextField()

        class Meta:
            app_label = "testapp"

        def perform(self):
            return None

    setattr(Sloppy, rule, ValueError)  # a class, not a tuple of classes
    errors = job_model_errors(Sloppy)
    assert [error.id for error in errors] == ["jobs.E005"]
    assert f"testapp.Sloppy.{rule} must be a tuple of exception classes" in errors[0].msg
