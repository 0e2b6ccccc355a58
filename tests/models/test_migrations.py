"""Migrations keep existing databases' rows: run against a real database, back and forth."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs.models import LatencyProbe, ScheduledRun

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("jobs", "0008_taskjob_moves_to_jobs_contrib_tasks")
AFTER = ("jobs", "0009_latency_probe")
SLOT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def migrate(target: tuple[str, str]):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


def migrate_to_latest() -> None:
    """Every app's last migration, as the tests after this one expect (AFTER may not be it)."""
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_latency_probe_keeps_its_rows_indexes_and_schedule_slots():
    old = migrate(BEFORE)
    try:
        probe = old.get_model("jobs", "Heartbeat").objects.create(queue="urgent", state="pending")
        runs = old.get_model("jobs", "ScheduledRun").objects
        runs.create(
            schedule="heartbeat:urgent",
            slot=SLOT,
            enqueued_at=SLOT,
            job_model="jobs.Heartbeat",
            job_pk=str(probe.pk),
        )
        runs.create(schedule="nightly", slot=SLOT, enqueued_at=SLOT, job_model="x.Y", job_pk="1")
    finally:
        migrate_to_latest()

    assert LatencyProbe.objects.get().pk == probe.pk
    assert sorted(ScheduledRun.objects.values_list("schedule", "job_model")) == [
        ("nightly", "x.Y"),
        ("probe:urgent", "jobs.LatencyProbe"),
    ]
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, LatencyProbe._meta.db_table)
    assert {name for name in indexes if name.endswith("_pend")} == {
        "jobs_latencyprob_50545977_pend"
    }

    migrate(BEFORE)  # and back: the slots take their old names again
    try:
        assert sorted(ScheduledRun.objects.values_list("schedule", flat=True)) == [
            "heartbeat:urgent",
            "nightly",
        ]
    finally:
        migrate_to_latest()
