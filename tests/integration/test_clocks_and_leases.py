"""Leases and time on real workers: a job's own row lock, and hosts whose clocks are wrong.

Workers run as real `runjobs` processes; a wrong clock is a real one, made by libfaketime
(Debian's `faketime`), which moves the process's wall clock as a misconfigured host would.
"""

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from jobs import timesource
from jobs.db.clock import server_time
from jobs.models import JobState
from jobs.models import Worker as WorkerRow
from jobs.runtime.worker import WorkerLoop
from tests.conftest import REPO, in_thread, row_locks, start_manage, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), row_locks]

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
needs_faketime = pytest.mark.skipif(
    not FAKETIME.exists(), reason="needs libfaketime (apt-get install faketime)"
)


def skewed(seconds: int) -> dict[str, str]:
    """The environment of a process on a host whose clock is `seconds` off (+ ahead).

    Only the wall clock moves, as on a misconfigured host; `tests/skewed_clock` works
    around libfaketime's broken `time.sleep()`.
    """
    return {
        "LD_PRELOAD": str(FAKETIME),
        "FAKETIME": f"{seconds:+d}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(REPO / "tests" / "skewed_clock"),
        "JOBS_LOG_LEVEL": "INFO",
    }


def stop(*workers) -> list[str]:
    outputs = []
    for worker in workers:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)
        outputs.append(stderr)
    return outputs


@contextmanager
def rescuing_all_the_time() -> Iterator[list[int]]:
    """Another worker's rescue, as eager as it can be (every 20 ms) while the block runs;
    yields the list of how many rows each pass rescued."""
    rescued, done = [], threading.Event()

    def rescue():
        try:
            while not done.is_set():
                rescued.append(RecordingJob.objects.rescue())
                time.sleep(0.02)
        finally:
            connection.close()

    rescuer = threading.Thread(target=rescue)
    rescuer.start()
    try:
        yield rescued
    finally:
        done.set()
        rescuer.join()


def test_a_job_holding_its_own_row_lock_does_not_cost_its_neighbours_their_leases(settings, caplog):
    settings.JOBS_LEASE_SECONDS = 1  # renewed every 0.25 s; the job holds its row 2.5 s
    holder = RecordingJobFactory(enqueue=True, behaviour="hold_own_row", sleep_seconds=2.5)
    neighbours = [RecordingJobFactory(enqueue=True, sleep_seconds=2.5) for _ in range(2)]
    worker = WorkerLoop(threads=3, interval=0.05, run_clock=False)
    with rescuing_all_the_time() as rescued:
        serving = in_thread(worker)
        try:
            wait_for(lambda: Effect.objects.count() == 3, timeout=10)
            wait_for(lambda: not RecordingJob.objects.exclude(state=JobState.SUCCEEDED).exists())
        finally:
            worker.stop()
            serving.join()
    assert sum(rescued) == 0
    for job in [holder, *neighbours]:
        assert Effect.objects.filter(job_id=job.pk).count() == 1
    assert f"could not renew the lease of {holder.label}: its row is locked" in caplog.text


@needs_faketime
def test_a_worker_whose_clock_is_ahead_does_not_start_a_delayed_job_early():
    job = RecordingJobFactory(enqueue__delay=30)
    ahead = start_manage("runjobs", "--interval", "0.2", **skewed(+60))
    try:
        wait_for(lambda: WorkerRow.objects.filter(pid=ahead.pid).exists(), timeout=20)
        time.sleep(2)  # several polls: each would have claimed it by the host's clock
        assert not Effect.objects.filter(job_id=job.pk).exists()
        row = WorkerRow.objects.get(pid=ahead.pid)
        assert 59 < row.clock_offset < 61
    finally:
        [stderr] = stop(ahead)
    assert re.search(r"this host's clock is (59\.9|60\.0)\d*s ahead of the database's", stderr)
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.PENDING


@needs_faketime
def test_workers_on_hosts_with_wrong_clocks_neither_steal_nor_lose_each_others_jobs():
    """A host 10 s ahead took a healthy worker's job as orphaned; one 10 s behind had every
    job it claimed taken from it. With a 3 s lease and 4 s jobs, either would show."""
    lease = {"JOBS_LEASE_SECONDS": "3"}
    jobs = [RecordingJobFactory(enqueue=True, sleep_seconds=4, max_attempts=3) for _ in range(6)]
    workers = [
        start_manage("runjobs", "--interval", "0.1", "--threads", "2", **lease, **env)
        for env in ({"JOBS_LOG_LEVEL": "INFO"}, skewed(+10), skewed(-10))
    ]
    try:
        wait_for(
            lambda: not RecordingJob.objects.exclude(state=JobState.SUCCEEDED).exists(),
            timeout=60,
        )
    finally:
        outputs = stop(*workers)
        print(*outputs, sep="\n----\n")  # shown if the test fails
    for job in jobs:
        assert list(Effect.objects.filter(job_id=job.pk).values_list("attempt", flat=True)) == [1]
    assert not any("rescued" in output for output in outputs), outputs
    assert len({effect.worker for effect in Effect.objects.all()}) == 3  # every host took some


def test_now_is_the_database_s_time_once_synchronised(monkeypatch):
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # this host: an hour ahead
    reading = timesource.synchronise()
    assert 3599 < reading.offset < 3601
    assert reading.error < 0.5
    server = server_time("default")
    assert abs(timesource.now() - server) < timedelta(seconds=0.5)


def test_a_slower_reading_does_not_replace_a_more_precise_one():
    first = timesource.synchronise()
    exact = timesource.Reading(first.server, time.monotonic(), first.offset, error=0.0)
    timesource._reading = exact  # a reading no round trip can beat, taken just now
    assert timesource.synchronise() is exact
    slow = timesource.Reading(first.server, first.monotonic, first.offset, error=1.0)
    timesource._reading = slow  # as if the kept reading had taken a 2 s round trip
    assert timesource.synchronise() is not slow


SLOW_FIRST_CLAIM_POSTGRESQL = """
CREATE TABLE slow_claim_once (id int);
INSERT INTO slow_claim_once VALUES (1);
CREATE FUNCTION slow_claim() RETURNS trigger AS $$
BEGIN
    IF OLD.state = 'pending' AND NEW.state = 'running'
       AND EXISTS (SELECT 1 FROM slow_claim_once) THEN
        DELETE FROM slow_claim_once;
        PERFORM pg_sleep(2);
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow_claim BEFORE UPDATE ON testapp_recordingjob
    FOR EACH ROW EXECUTE FUNCTION slow_claim();
"""
NO_SLOW_CLAIM_POSTGRESQL = """
DROP TRIGGER IF EXISTS slow_claim ON testapp_recordingjob;
DROP FUNCTION IF EXISTS slow_claim();
DROP TABLE IF EXISTS slow_claim_once;
"""
# The same on MariaDB and MySQL, one statement each (a trigger's body has semicolons).
SLOW_FIRST_CLAIM_MYSQL = [
    "CREATE TABLE slow_claim_once (id int)",
    "INSERT INTO slow_claim_once VALUES (1)",
    """CREATE TRIGGER slow_claim BEFORE UPDATE ON testapp_recordingjob FOR EACH ROW
    BEGIN
        IF OLD.state = 'pending' AND NEW.state = 'running'
           AND EXISTS (SELECT 1 FROM slow_claim_once) THEN
            DELETE FROM slow_claim_once;
            DO SLEEP(2);
        END IF;
    END""",
]
NO_SLOW_CLAIM_MYSQL = ["DROP TRIGGER IF EXISTS slow_claim", "DROP TABLE IF EXISTS slow_claim_once"]


def run_each(statements: str | list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in [statements] if isinstance(statements, str) else statements:
            cursor.execute(statement)


def test_an_attempt_whose_claim_came_back_after_its_lease_is_not_started():
    """The first claim's reply takes 2 s (the server sleeps inside the claim's UPDATE, as a
    slow network would hold it up) under a 1 s lease; meanwhile another worker's rescue
    runs every 20 ms. The late attempt must not run beside the one that replaced it."""
    job = RecordingJobFactory(enqueue=True, max_attempts=3)
    mysql = connection.vendor == "mysql"
    run_each(SLOW_FIRST_CLAIM_MYSQL if mysql else SLOW_FIRST_CLAIM_POSTGRESQL)
    try:
        with rescuing_all_the_time():
            worker = start_manage("runjobs", "--interval", "0.1", JOBS_LEASE_SECONDS="1")
            try:
                wait_for(lambda: RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED)
            finally:
                [stderr] = stop(worker)
    finally:
        run_each(NO_SLOW_CLAIM_MYSQL if mysql else NO_SLOW_CLAIM_POSTGRESQL)
    assert Effect.objects.filter(job_id=job.pk).count() == 1, stderr
    assert f"{job.label} not started: its lease ran out" in stderr
