"""The chaos test: workers SIGKILLed, frozen and cut off, the database restarted, no job lost.

5,000 jobs, each leaving one Effect row per execution; three real `runjobs` processes; a
random one SIGKILLed every 1 to 2 seconds and replaced; at a quarter of the jobs done, one
worker frozen (SIGSTOP) for two leases, then thawed (SIGCONT); at half, every worker
connection terminated; at three quarters, the database restarted: every session of the test
database terminated, then the server itself restarted where this test may
(`restart_database()`: as root on a Debian packaged PostgreSQL cluster or MariaDB server, or
the throwaway cluster `python -m tests` started; never a server others are using). It runs
on PostgreSQL and MariaDB. At the end every job has
succeeded, and every duplicate execution is explained: a worker runs its default number of
jobs at once (`DEFAULT_THREADS`), so each kill, each frozen worker and each worker whose
connections were cut or whose server restarted can account for at most that many.
"""

import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.db.models import Max
from django.db.utils import InterfaceError
from django.utils import timezone

from jobs.models import JobState
from jobs.runtime.worker import DEFAULT_THREADS
from tests.conftest import row_locks, start_manage
from tests.integration.test_database_outage import cut_other_connections
from tests.testapp.models import Effect, RecordingJob

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    row_locks,  # a server whose sessions can be cut, and restarted
    pytest.mark.django_db(transaction=True),
]

JOBS = 5_000
WORKERS = 3
DEADLINE_SECONDS = 240
WORKER_ENV = {"JOBS_LEASE_SECONDS": "2", "JOBS_LOG_LEVEL": "ERROR"}
FREEZE_SECONDS = 4  # two leases: the frozen worker's jobs are rescued while it sleeps


def start_worker():
    return start_manage("runjobs", "--interval", "0.1", "--grace", "5", **WORKER_ENV)


def test_chaos_every_job_succeeds_and_every_duplicate_is_explained(capsys):
    chance = random.Random(20261122)
    RecordingJob.objects.bulk_create(  # created new, then enqueued through the public verb
        RecordingJob(
            label_text=f"chaos-{n}", sleep_seconds=chance.uniform(0.005, 0.03), max_attempts=25
        )
        for n in range(JOBS)
    )
    for job in RecordingJob.objects.all():
        job.enqueue()

    workers = [start_worker() for _ in range(WORKERS)]
    kills = cut_workers = restarted_workers = frozen_workers = 0
    restart = "not done"
    frozen = None
    thaw_at = 0.0
    cut_done = False
    began = time.monotonic()
    next_kill = began + chance.uniform(1, 2)
    try:
        while (done := succeeded()) < JOBS:
            now = time.monotonic()
            assert now - began < DEADLINE_SECONDS, f"not all done in time: {where_jobs_are()}"
            if now >= next_kill:
                victim = chance.randrange(WORKERS)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(timeout=10)
                workers[victim] = start_worker()
                kills += 1
                next_kill = now + chance.uniform(1, 2)
            if frozen_workers == 0 and done > JOBS // 4:
                frozen = workers[chance.randrange(WORKERS)]
                frozen.send_signal(signal.SIGSTOP)
                frozen_workers, thaw_at = 1, now + FREEZE_SECONDS
            if frozen is not None and now >= thaw_at:
                frozen.send_signal(signal.SIGCONT)  # killed meanwhile: a no-op
                frozen = None
            if not cut_done and done > JOBS // 2:
                cut_workers = WORKERS if cut_other_connections() else 0
                cut_done = True
            if restart == "not done" and done > JOBS * 3 // 4:
                cut_other_connections()
                restart = restart_database()
                restarted_workers = WORKERS
            time.sleep(0.1)
    finally:
        if frozen is not None:
            frozen.send_signal(signal.SIGCONT)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.communicate(timeout=30)

    executions = Counter(Effect.objects.values_list("job_id", flat=True))
    duplicates = sum(executions.values()) - len(executions)
    explained = (kills + cut_workers + restarted_workers + frozen_workers) * DEFAULT_THREADS
    with capsys.disabled():  # the counts belong in CI's output, printed before the verdict
        print(
            f"\nchaos: {JOBS} jobs, {kills} SIGKILLs, {frozen_workers} worker frozen for "
            f"{FREEZE_SECONDS} s, connections of {cut_workers} workers cut once, "
            f"database {restart}, {sum(executions.values())} executions, {duplicates} "
            f"duplicates (at most {explained} explained), {time.monotonic() - began:.1f}s; "
            f"{where_jobs_are()}"
        )
    assert len(executions) == JOBS, "a job never ran"
    assert RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == JOBS
    assert kills >= 3
    assert frozen_workers == 1
    assert restart != "not done"
    assert duplicates <= explained


def succeeded() -> int:
    """How many jobs succeeded; asked again on a new connection if the server went away."""
    for _ in range(100):
        try:
            return RecordingJob.objects.filter(state=JobState.SUCCEEDED).count()
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(0.2)
    raise AssertionError("the database did not come back within 20 s")


def where_jobs_are() -> str:
    """The jobs by state, their ended attempts by kind (errors and rescues, most common
    first), the most attempts one took, and how far ahead the latest retry waits: what a run
    that misses its deadline needs to be understood."""
    jobs = RecordingJob.objects.all()
    states = dict(Counter(jobs.values_list("state", flat=True)))
    errors = Counter(
        entry.get("type", "?")
        for history in jobs.exclude(error_history=[]).values_list("error_history", flat=True)
        for entry in history
    )
    most = jobs.aggregate(most=Max("attempts"))["most"]
    latest = jobs.filter(state=JobState.PENDING).aggregate(latest=Max("run_at"))["latest"]
    ahead = f"{(latest - timezone.now()).total_seconds():.0f} s" if latest else "none"
    return (
        f"states {states}, ended attempts {dict(errors.most_common(4))}, at most {most} "
        f"attempts, latest pending run_at ahead {ahead}"
    )


def restart_database() -> str:
    """Restart the server the tests use, if it is this test's to restart; say what was done."""
    return restart_mariadb() if connection.vendor == "mysql" else restart_postgresql()


def restart_mariadb() -> str:
    """Restart the packaged MariaDB server when we are root and nobody else is connected to
    it: shut down through the protocol, then started again as these machines start it (the
    server binary as user mysql, in a session of its own so that it outlives the test)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE command <> 'Daemon'"
            " AND user <> 'system user' AND (db IS NULL OR db <> DATABASE())"
        )
        others = cursor.fetchone()[0]
        cursor.execute("SELECT @@datadir")
        data_directory = cursor.fetchone()[0]
    if others:
        return f"not restarted ({others} sessions of other databases: someone else uses it)"
    server = shutil.which("mariadbd", path="/usr/sbin")
    if os.geteuid() != 0 or server is None or data_directory.rstrip("/") != "/var/lib/mysql":
        return f"not restarted (not the packaged server run as root: {data_directory})"
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SHUTDOWN")
    connection.close()
    deadline = time.monotonic() + 60
    while Path("/run/mysqld/mysqld.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.Popen(
        [server, "--user=mysql"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while time.monotonic() < deadline:  # back when it answers, as pg_ctl -w waits
        try:
            connection.ensure_connection()
            break
        except OperationalError:
            time.sleep(0.1)
    return f"restarted in {time.monotonic() - started:.1f}s"


def restart_postgresql() -> str:
    """Restart the PostgreSQL server the tests use, if it is this test's to restart; say what
    was done.

    Two servers are, when nobody else is connected to another of their databases: a Debian
    packaged cluster when we are root (`pg_ctlcluster restart`, as CI runs it), and a
    throwaway cluster `python -m tests` started (`tests/postgres_server.py`, restarted with
    its own `pg_ctl` and log file, as its owner). Any other server, and one that others are
    using (a shared development server, where a restart would break their work), is left
    running: the sessions of the test database were terminated, which is what a restart does
    to the workers.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('data_directory'), current_setting('port')")
        data_directory, port = cursor.fetchone()
        cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
        major = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname IS DISTINCT FROM current_database()"
        )
        others = cursor.fetchone()[0]
    connection.close()
    if others:
        return f"not restarted ({others} sessions of other databases: someone else uses it)"
    data = Path(data_directory)
    packaged = re.fullmatch(r"/var/lib/postgresql/([0-9.]+)/([^/]+)", data_directory)
    if packaged and os.geteuid() == 0 and shutil.which("pg_ctlcluster"):
        version, cluster = packaged.groups()
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"]
    elif data.parent.name.startswith("jobs-pg-") and (data.parent / "server.log").exists():
        pg_ctl = Path(f"/usr/lib/postgresql/{major}/bin/pg_ctl")
        pg_ctl = pg_ctl if pg_ctl.exists() else Path(shutil.which("pg_ctl") or "pg_ctl")
        command = [str(pg_ctl), "-D", str(data), "-l", str(data.parent / "server.log")]
        command += ["-m", "fast", "-w", "restart"]
        owner = data.stat().st_uid
        if owner != os.geteuid():
            if os.geteuid() != 0:
                return f"not restarted (its data directory belongs to uid {owner})"
            command = ["runuser", "-u", str(data.owner()), "--", *command]
    else:
        return f"not restarted (not a packaged or throwaway cluster: {data_directory}, port {port})"
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(command)} failed: {result.stderr}"
    return f"restarted in {time.monotonic() - started:.1f}s"
