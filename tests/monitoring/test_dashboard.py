"""The dashboard's memory growth ranking: exact medians and worsts of the last hour's
finished attempts, per job model, ranked, at a cost that does not follow the rows."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.models import JobState
from jobs.monitoring import dashboard
from jobs.monitoring.dashboard import memory_growth_by_model
from project.instances.models import InstanceProvision
from tests.conftest import NOON
from tests.factories import (
    InstanceProvisionFactory,
    RecordingJobFactory,
    StepJobFactory,
    UrgentJobFactory,
)
from tests.testapp.models import RecordingJob, StepJob, UrgentJob

pytestmark = pytest.mark.django_db

RECENTLY = NOON - timedelta(minutes=10)


def attempt(factory, growth_kb, *, state=JobState.SUCCEEDED, at=RECENTLY):
    """A job of `factory`'s model whose last attempt ended in `state` at `at` (a pending one:
    ran once, waiting for a retry), having raised its worker's peak by `growth_kb` KiB
    (None: not recorded, as for a job run outside a worker)."""
    job = factory()
    ended = state not in (JobState.PENDING, JobState.RUNNING)
    type(job)._base_manager.filter(pk=job.pk).update(
        state=state,
        attempts=1,
        run_at=at,
        started_at=at,
        finished_at=at if ended else None,
        memory_growth_kb=growth_kb,
    )
    return job


def ranked(*models):
    return [
        (growth.model, growth.attempts, growth.median_kb, growth.worst_kb)
        for growth in memory_growth_by_model(models, NOON)
    ]


def test_median_and_worst_are_exact_over_the_hours_finished_attempts_only():
    for growth in (0, 0, 100):
        attempt(InstanceProvisionFactory, growth)
    worst = attempt(InstanceProvisionFactory, 5000, state=JobState.FAILED)
    attempt(InstanceProvisionFactory, None)  # not recorded: not an attempt counted
    attempt(InstanceProvisionFactory, 90_000, at=NOON - timedelta(hours=2))  # before the hour
    attempt(InstanceProvisionFactory, 90_000, state=JobState.PENDING)  # retrying, not finished
    attempt(InstanceProvisionFactory, 90_000, state=JobState.RUNNING)
    attempt(InstanceProvisionFactory, 90_000, state=JobState.CANCELLED)  # never ran
    [growth] = memory_growth_by_model([InstanceProvision], NOON)
    assert (growth.attempts, growth.median_kb, growth.worst_kb) == (4, 50.0, 5000)
    assert growth.worst_pk == worst.pk


def test_an_odd_count_has_its_middle_value_as_the_median():
    for growth in (7, 3000, 20):
        attempt(StepJobFactory, growth)
    assert ranked(StepJob) == [(StepJob, 3, 20.0, 3000)]


def test_the_hour_starts_exactly_an_hour_ago():
    attempt(StepJobFactory, 10, at=NOON - timedelta(hours=1))
    attempt(StepJobFactory, 99, at=NOON - timedelta(hours=1, microseconds=1))
    assert ranked(StepJob) == [(StepJob, 1, 10.0, 10)]


def test_the_worst_job_is_the_latest_of_those_as_bad():
    attempt(StepJobFactory, 800, at=RECENTLY - timedelta(minutes=5))
    latest = attempt(StepJobFactory, 800)
    attempt(StepJobFactory, 800, at=RECENTLY - timedelta(minutes=1))
    [growth] = memory_growth_by_model([StepJob], NOON)
    assert growth.worst_pk == latest.pk


def test_models_are_ranked_by_median_then_worst_and_those_without_growth_left_out():
    for growth in (0, 0, 0, 40_000):  # needs memory once in a while: median 0
        attempt(InstanceProvisionFactory, growth)
    for growth in (900, 1000, 1100):  # grows every time: the suspect
        attempt(StepJobFactory, growth)
    for growth in (0, 0, 50_000):  # as InstanceProvision's median, a worse worst
        attempt(RecordingJobFactory, growth)
    attempt(RecordingJobFactory, None)
    attempt(UrgentJobFactory, None)  # finished, nothing recorded: not ranked
    assert ranked(InstanceProvision, StepJob, RecordingJob, UrgentJob) == [
        (StepJob, 3, 1000.0, 1100),
        (RecordingJob, 3, 0.0, 50_000),
        (InstanceProvision, 4, 0.0, 40_000),
    ]


def test_at_most_the_shown_number_of_models_are_ranked(monkeypatch):
    monkeypatch.setattr(dashboard, "MEMORY_MODELS_SHOWN", 2)
    attempt(InstanceProvisionFactory, 1)
    attempt(StepJobFactory, 3)
    attempt(RecordingJobFactory, 2)
    models = [
        growth.model
        for growth in memory_growth_by_model([InstanceProvision, StepJob, RecordingJob], NOON)
    ]
    assert models == [StepJob, RecordingJob]


def test_one_query_per_model_and_one_more_for_its_worst_job_however_many_rows():
    def queries_asked() -> int:
        with CaptureQueriesContext(connection) as queries:
            memory_growth_by_model([InstanceProvision, StepJob, RecordingJob], NOON)
        return len(queries)

    attempt(StepJobFactory, 5)
    attempt(RecordingJobFactory, None)
    assert queries_asked() == 3 + 1  # StepJob recorded a growth: its worst job is looked up
    for growth in range(30):
        attempt(StepJobFactory, growth)
        attempt(InstanceProvisionFactory, growth)
    assert queries_asked() == 3 + 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's EXPLAIN")
def test_the_query_reads_the_hours_finished_rows_through_the_fin_index():
    """With sequential scans priced out, the plans show the queries *can* use the index."""
    attempt(StepJobFactory, 5)
    with CaptureQueriesContext(connection) as queries:
        memory_growth_by_model([StepJob], NOON)
    assert "percentile_cont(0.5) WITHIN GROUP" in queries[0]["sql"]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for query in queries:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = "\n".join(line for (line,) in cursor.fetchall())
            assert "Seq Scan" not in plan, plan
            assert re.search(r"Index Scan (on|using) \w+_fin\b", plan), plan
