"""Outcomes whose text the database would refuse (a NUL byte, a lone surrogate, a value too
long for its column) are stored readable, by a real worker, once: the job ends in the state
it reached and is not re-run."""

import logging

import pytest
from django.db import connection

from jobs.contrib.tasks.api import task
from jobs.contrib.tasks.models import TaskJob
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import needs_postgresql
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db(transaction=True)

logger = logging.getLogger(__name__)
RUNS: list[str] = []


@task()
def logs_nul_and_raises_a_surrogate() -> None:
    RUNS.append("raise")
    logger.warning("a NUL byte: [\x00]")
    raise ValueError("a lone surrogate: [\ud800]")


@task()
def logs_nul_and_succeeds() -> str:
    RUNS.append("succeed")
    logger.warning("a NUL byte [\x00] and a lone surrogate [\udfff]")
    return "done"


def work() -> int:
    return WorkerLoop(models=[TaskJob], threads=2, burst=True).run()


def test_a_job_that_logs_a_nul_byte_and_raises_a_lone_surrogate_fails_once_with_readable_text():
    RUNS.clear()
    job = TaskJob.objects.get(pk=logs_nul_and_raises_a_surrogate.enqueue().id)
    work()
    job.refresh_from_db()
    assert (job.state, job.attempts, RUNS) == (JobState.FAILED, 1, ["raise"])
    assert job.error_type == "ValueError"
    assert job.error_message == "a lone surrogate: [\ufffd]"
    assert "a lone surrogate: [\ufffd]" in job.error_traceback
    assert "a NUL byte: [\ufffd]" in job.log
    assert job.error_history[-1]["message"] == job.error_message
    assert "a NUL byte: [\ufffd]" in job.error_history[-1]["log"]


def test_a_job_that_succeeds_after_logging_unstorable_text_succeeds_once():
    RUNS.clear()
    jobs = [TaskJob.objects.get(pk=logs_nul_and_succeeds.enqueue().id) for _ in range(3)]
    work()
    for job in jobs:
        job.refresh_from_db()
        assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
        assert "a NUL byte [\ufffd] and a lone surrogate [\ufffd]" in job.log
    assert RUNS == ["succeed"] * 3


TooLongANameForItsColumn = type("E" * 300, (Exception,), {})  # error_type holds 255


@task()
def raises_an_error_the_database_refuses() -> None:
    RUNS.append("refused")
    logger.warning("a line of its log")
    raise TooLongANameForItsColumn("the real error, with a NUL [\x00]")


@needs_postgresql("a column length the database enforces")
def test_an_outcome_the_database_refuses_is_stored_minimally_without_holding_back_its_batch():
    RUNS.clear()
    refused = TaskJob.objects.get(pk=raises_an_error_the_database_refuses.enqueue().id)
    others = [TaskJob.objects.get(pk=logs_nul_and_succeeds.enqueue().id) for _ in range(3)]
    WorkerLoop(models=[TaskJob], threads=4, burst=True).run()
    refused.refresh_from_db()
    assert (refused.state, refused.attempts) == (JobState.FAILED, 1)
    assert refused.error_type.startswith("tests.test_outcome_storage.EEE")
    assert refused.error_message.startswith("the real error, with a NUL [\\ufffd]")
    assert "could not be stored as it was (value too long" in refused.error_message
    assert "could not be stored as it was" in refused.log
    assert refused.error_history[-1]["message"] == refused.error_message
    for job in others:
        job.refresh_from_db()
        assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert sorted(RUNS) == ["refused", "succeed", "succeed", "succeed"]


@task()
def logs_with_a_bad_format_string() -> str:
    logger.warning("%d items", "x")
    return "done"


def test_a_log_call_with_a_bad_format_string_does_not_fail_the_job():
    job = TaskJob.objects.get(pk=logs_with_a_bad_format_string.enqueue().id)
    work()
    job.refresh_from_db()
    assert (job.state, job.return_value) == (JobState.SUCCEEDED, "done")
    assert "[could not format this log message: TypeError:" in job.log
    assert "'%d items' % ('x',)" in job.log


def test_a_success_field_its_column_refuses_ends_the_job_succeeded_once_without_that_value(
    monkeypatch,
):
    """A value `perform()` leaves in a `success_fields` field that the database refuses (too
    long for its column) must not leave the row running: it would be rescued and its job run
    again, for ever. The success is stored without the value, saying so in the log; SQLite,
    which enforces no length, keeps it."""
    too_long = "x" * 60  # label_text holds 50
    performed = RecordingJob.perform

    def perform(self: RecordingJob) -> None:
        performed(self)
        self.label_text = too_long

    monkeypatch.setattr(RecordingJob, "success_fields", ("label_text",))
    monkeypatch.setattr(RecordingJob, "perform", perform)
    job = RecordingJob.objects.create(label_text="before").enqueue()
    WorkerLoop(models=[RecordingJob], threads=2, burst=True).run()

    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert Effect.objects.filter(job_id=job.pk).count() == 1
    if connection.vendor == "sqlite":
        assert job.label_text == too_long
    else:
        assert job.label_text == "before"
        assert "could not be stored as it was" in job.log
        assert "this attempt's log and label_text were dropped" in job.log
