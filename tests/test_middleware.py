"""JOBS_MIDDLEWARE: the chain around every attempt, its order, what it can do, and the check."""

import logging

import pytest
from django.test import override_settings

from jobs.checks import check_settings
from jobs.execution import middleware as chains
from jobs.models import JobState
from tests.testapp import middleware
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db

OUTER = "tests.testapp.middleware.Outer"
INNER = "tests.testapp.middleware.inner"


@pytest.fixture(autouse=True)
def _fresh_notes():
    middleware.SEEN.clear()
    middleware.BUILT.clear()
    chains._build.cache_clear()  # as in a fresh process


def run(**fields):
    return RecordingJob.objects.create(**fields).enqueue().run()


@override_settings(JOBS_MIDDLEWARE=[OUTER, INNER])
def test_the_first_is_outermost_and_the_chain_is_built_once_per_process(caplog):
    caplog.set_level(logging.INFO, logger=middleware.logger.name)
    job = run(label_text="a")
    run(label_text="b")
    assert job.state == JobState.SUCCEEDED
    assert middleware.SEEN == [
        "outer in a", "inner in", "inner out", "outer out",
        "outer in b", "inner in", "inner out", "outer out",
    ]  # fmt: skip
    assert middleware.BUILT == ["inner", "Outer"]  # innermost made first, and only once
    assert "inner middleware around a" in job.log  # its lines are kept with the job's


@override_settings(JOBS_MIDDLEWARE=[OUTER, INNER])
def test_a_middleware_sees_the_attempts_exception_and_the_job_retries_as_usual():
    job = run(label_text="f", fail=True)
    assert middleware.SEEN == ["outer in f", "inner in", "outer saw Boom"]
    assert (job.state, job.error_type) == (JobState.FAILED, "tests.testapp.models.Boom")


@override_settings(JOBS_MIDDLEWARE=["tests.testapp.middleware.skip_maintenance"])
def test_a_middleware_can_skip_snooze_or_cancel_the_attempt():
    skipped, later, stopped = (
        run(label_text="skip"),
        run(label_text="later"),
        run(label_text="stop"),
    )
    assert not Effect.objects.exists()  # perform() never ran
    assert skipped.state == JobState.SUCCEEDED
    assert (later.state, later.attempts) == (JobState.PENDING, 0)  # no attempt counted
    assert stopped.state == JobState.CANCELLED


@override_settings(JOBS_MIDDLEWARE=["tests.testapp.middleware.swallow"])
def test_a_middleware_that_swallows_the_exception_makes_the_attempt_a_success():
    job = run(label_text="x", fail=True)
    assert job.state == JobState.SUCCEEDED
    assert middleware.SEEN == ["swallowed boom in x"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["tests.testapp.nowhere.Outer"], "cannot import 'tests.testapp.nowhere.Outer'"),
        (["tests.testapp.middleware.raising_factory"], "raised RuntimeError('no broker"),
        (["tests.testapp.middleware.not_callable"], "returned 42, not a callable"),
        ("tests.testapp.middleware.Outer", "must be a list of dotted paths"),
    ],
)
def test_check_reports_middleware_that_cannot_be_loaded(setting, message):
    with override_settings(JOBS_MIDDLEWARE=setting):
        errors = [error for error in check_settings() if error.id == "jobs.E015"]
    assert len(errors) == 1
    assert message in errors[0].msg


@override_settings(JOBS_MIDDLEWARE=["tests.testapp.nowhere.Outer"])
def test_a_worker_with_a_broken_chain_fails_the_attempt_loudly_and_loses_nothing():
    job = run(label_text="a")
    assert job.state == JobState.FAILED
    assert job.error_type == "jobs.errors.ConfigurationError"
    assert "cannot import" in job.error_message
    assert not Effect.objects.exists()
    assert job.requeue().state == JobState.PENDING  # fixed settings, requeued: nothing lost
