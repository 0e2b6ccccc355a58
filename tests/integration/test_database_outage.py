"""A worker whose database connections are cut keeps going, and no job is lost."""

import contextlib
import time

import pytest
from django.db import OperationalError, connection

from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from tests.conftest import row_locks, start_manage, wait_for
from tests.testapp.models import RecordingJob

pytestmark = [
    pytest.mark.integration,
    row_locks,  # a server whose sessions can be cut
    pytest.mark.django_db(transaction=True),
]

JOBS = 300


def cut_other_connections() -> int:
    """Terminate every other session on the test database, as a server restart would."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT id FROM information_schema.PROCESSLIST"
                " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            sessions = [row[0] for row in cursor.fetchall()]
            for session in sessions:
                with contextlib.suppress(OperationalError):  # gone already
                    cursor.execute("KILL %s", [session])
            return len(sessions)
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_worker_survives_its_connections_being_cut_and_every_job_finishes():
    for n in range(JOBS):
        RecordingJob.objects.create(
            label_text=f"job-{n}", sleep_seconds=0.01, max_attempts=5
        ).enqueue()
    worker = start_manage(
        "runjobs", "--interval", "0.1", JOBS_LEASE_SECONDS="1", JOBS_LOG_LEVEL="WARNING"
    )
    try:
        # Cut only once the worker runs: before that, refusing to start is the design.
        wait_for(lambda: WorkerRow.objects.exists())
        cuts = 0
        for _ in range(6):
            cuts += cut_other_connections()
            time.sleep(0.4)
        wait_for(
            lambda: RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == JOBS,
            timeout=120,
        )
        assert worker.poll() is None, "the worker died"
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
    assert cuts > 0
    assert worker.returncode == 0, stderr
    assert "database unavailable while" in stderr
    assert "Traceback" not in stderr
    assert "lost its claim" not in stderr or "could not record" in stderr
