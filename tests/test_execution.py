"""The attempt protocol: outcomes written in batches, each fenced by its own claim."""

import logging

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs import execution, timesource
from jobs.db.outage import close_broken_connections
from jobs.execution import endings
from jobs.models import JobState
from tests.conftest import row_locks
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db


def claimed(count: int) -> list[RecordingJob]:
    jobs = RecordingJobFactory.create_batch(count, enqueue=True)
    for job in jobs:
        execution.claim_for_run(job)
    return jobs


def succeeded(job: RecordingJob, log: str = "") -> execution.Outcome:
    changes = {"finished_at": timesource.now(), "log": log}
    return execution.Outcome(job, JobState.SUCCEEDED, changes, took=0.01)


def outcome_writes(queries: CaptureQueriesContext) -> list[str]:
    table = RecordingJob._meta.db_table
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().startswith(("UPDATE", "WITH"))
        and table in q["sql"]
        and f"{connection.ops.quote_name('attempts')} + 1" not in q["sql"]
    ]


def states(jobs: list[RecordingJob]) -> list[str]:
    found = dict(RecordingJob.objects.values_list("pk", "state"))
    return [found[job.pk] for job in jobs]


def test_a_batch_of_outcomes_is_one_statement_per_model_and_shape():
    jobs = claimed(4)
    outcomes = [succeeded(job, log=f"line {job.pk}") for job in jobs[:3]]
    boom = RuntimeError("boom")
    outcomes.append(
        execution.Outcome(
            jobs[3], *endings.failure_outcome(jobs[3], boom, "tb"), took=0.1, exc=boom
        )
    )
    with CaptureQueriesContext(connection) as queries:
        written = execution.record(outcomes, using="default")
    assert written == [True, True, True, True]
    assert len(outcome_writes(queries)) == 2  # the three successes, then the failure
    assert states(jobs) == ["succeeded"] * 3 + ["failed"]
    logs = dict(RecordingJob.objects.values_list("pk", "log"))
    assert [logs[job.pk] for job in jobs[:3]] == [f"line {job.pk}" for job in jobs[:3]]
    assert RecordingJob.objects.get(pk=jobs[3].pk).error_message == "boom"


def test_success_fields_are_written_with_the_success_by_the_attempt_holding_the_row_only(
    monkeypatch,
):
    monkeypatch.setattr(RecordingJob, "success_fields", ("label_text",))
    jobs = claimed(3)
    RecordingJob.objects.filter(pk=jobs[1].pk).update(attempts=2, claimed_by="other:1")
    for job in jobs:
        job.label_text = f"made by attempt {job.attempts} of {job.pk}"
    outcomes = [
        execution.Outcome(job, JobState.SUCCEEDED, endings.success_changes(job), took=0.01)
        for job in jobs
    ]
    assert execution.record(outcomes, using="default") == [True, False, True]
    labels = dict(RecordingJob.objects.values_list("pk", "label_text"))
    assert [labels[job.pk] == job.label_text for job in jobs] == [True, False, True]


def test_each_outcome_in_a_batch_is_fenced_by_its_own_claim():
    """A row rescued and claimed again meanwhile keeps the newer attempt; the rest are
    written, and the instances change only for the outcomes written."""
    jobs = claimed(3)
    RecordingJob.objects.filter(pk=jobs[1].pk).update(attempts=2, claimed_by="other:1")
    outcomes = [succeeded(job) for job in jobs]
    written = execution.record(outcomes, using="default")
    execution.settle(outcomes, written)
    assert written == [True, False, True]
    assert states(jobs) == ["succeeded", "running", "succeeded"]
    assert [job.state for job in jobs] == ["succeeded", "running", "succeeded"]
    assert [o.recorded for o in outcomes] == [True, False, True]


@row_locks
@pytest.mark.django_db(transaction=True)  # each outcome in a transaction of its own, as a worker's
def test_an_outcome_the_database_refuses_does_not_keep_the_others_from_being_written(caplog):
    jobs = claimed(3)
    refused = succeeded(jobs[1])
    refused.changes["progress_done"] = -1  # a CHECK constraint refuses it, even without its text
    outcomes = [succeeded(jobs[0]), refused, succeeded(jobs[2])]
    # (MariaDB refuses it sooner, as out of range for an unsigned column)
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        execution.record(outcomes, using="default")
    assert states(jobs) == ["running"] * 3  # the batch was one transaction: none written
    with caplog.at_level(logging.WARNING, logger="jobs.execution"):
        written = execution.record_each(outcomes, using="default")
    assert written == [True, None, True]  # None: not written, to be rescued in time
    assert states(jobs) == ["succeeded", "running", "succeeded"]
    assert f"could not record even a minimal outcome of {jobs[1].label}" in caplog.text


def test_text_no_database_stores_is_written_with_replacement_characters():
    (job,) = claimed(1)
    outcome = succeeded(job, log="a NUL [\x00] and a lone surrogate [\ud800]")
    assert execution.record([outcome], using="default") == [True]
    stored = RecordingJob.objects.get(pk=job.pk).log
    assert stored == "a NUL [\ufffd] and a lone surrogate [\ufffd]"


@row_locks
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_database_connection_breaks_under_it_is_left_to_rescue_not_failed(
    monkeypatch, caplog
):
    """Its failure is the database's, not the job's: a retry policy must not fail it for
    good over an outage. The row stays running, to be rescued when its lease runs out."""

    def perform(self):
        with connection.cursor() as cursor:
            if connection.vendor == "mysql":
                cursor.execute("SELECT CONNECTION_ID()")
                cursor.execute("KILL %s", [cursor.fetchone()[0]])
            else:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    (job,) = claimed(1)
    monkeypatch.setattr(RecordingJob, "perform", perform)
    with caplog.at_level(logging.WARNING, logger="jobs.execution"):
        execution.execute(job)
    close_broken_connections()
    assert states([job]) == ["running"]
    assert (
        f"could not record the outcome of {job.label} (its database connection broke while it "
        "ran); it will be rescued when its lease runs out"
    ) in caplog.text
