"""The framework's workloads (W1-W6, memory), each run in the configurations it names.

Every drain is a real `manage.py runjobs` in a `Configuration` (bench.workers), checked for
exactly-once; every rate comes from the rows; every latency runs from just before the
enqueue call to the first line of `perform()` (bench.stamps), both ends `time.time()`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from bench import stamps
from bench.models import BenchJob, NoopJob
from bench.rows import (
    Results,
    check_exactly_once,
    empty_table,
    fill_pending,
    percentiles,
    queue_jobs,
    rate,
    succeeded,
)
from bench.workers import BenchError, Configuration, Process, WorkerProcess
from jobs.db import engine_for

DRAIN_TIMEOUT = 1800  # seconds a burst worker may take before the benchmark calls it a hang
IDLE_SECONDS = 10  # how long W5 watches an idle worker's statements
MEMORY_BATCH = 10_000


def enqueue_rates(jobs: int) -> Results:
    """One W1 run: jobs/s enqueued one per transaction (`create().enqueue()`, then the
    one-statement `objects.enqueue()`), then in bulk."""
    empty_table()
    began = time.perf_counter()
    for _ in range(jobs):
        with transaction.atomic():
            NoopJob.objects.create().enqueue()
    single = jobs / (time.perf_counter() - began)
    empty_table()
    began = time.perf_counter()
    for _ in range(jobs):
        NoopJob.objects.enqueue()  # one statement: its own transaction, as the floor's INSERT
    one_statement = jobs / (time.perf_counter() - began)
    empty_table()
    began = time.perf_counter()
    NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(jobs))
    return {
        "single_jobs_per_s": single,
        "one_statement_jobs_per_s": one_statement,
        "bulk_jobs_per_s": jobs / (time.perf_counter() - began),
    }


def drain(
    configuration: Configuration, jobs: int, processes: int, *, fresh: bool = True
) -> Results:
    """Queue `jobs` of the configuration's model, drain them with `runjobs --burst`, check
    them, then delete them again.

    `fresh` empties the table first, so every drain starts from the same table: rows deleted
    by earlier drains leave dead entries in the pending indexes (autovacuum is off), and a
    drain that ran later would pay for them. Without it (W4) the rows already there stay.
    """
    if fresh:
        empty_table(configuration.model)
    rows = queue_jobs(jobs, configuration.model)
    supervised = ["--processes", str(processes)] if processes > 1 else []
    began = time.perf_counter()
    with WorkerProcess(configuration, "--burst", *supervised) as worker:
        worker.wait(DRAIN_TIMEOUT)
        wall = time.perf_counter() - began
        check_exactly_once(rows, jobs, worker.performed())
        threads, served = worker.served()
    result = {"jobs_per_s": rate(rows, jobs), "wall_s": wall, "threads": threads, "served": served}
    rows.delete()
    return result


def drains(configuration: Configuration, jobs: int, *, fresh: bool = True) -> Results:
    """One process, then `--processes 2`; keys are prefixed with the configuration's slug."""
    return {
        f"{configuration.slug}_{processes}p_{key}": value
        for processes in (1, 2)
        for key, value in drain(configuration, jobs, processes, fresh=fresh).items()
    }


def pickup_latency(configuration: Configuration, count: int, spacing: float) -> Results:
    """One W3 run: an idle worker; `count` jobs of the configuration's model `spacing` apart,
    each enqueued in its own transaction; ms from just before the enqueue call to the first
    line of `perform()`. (W7's keyed rows take the accounts in turn: each key has room.)

    The jobs alternate between the two ways to enqueue one job: `objects.enqueue()` (one
    statement; the floor's INSERT and NOTIFY are its counterpart, so the ratios use it) and
    `create().enqueue()` (two statements), under the same conditions.
    """
    model = configuration.model
    empty_table(model)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "stamps"
        with WorkerProcess(configuration, stamps=path) as worker:
            worker.wait_until_idle()
            enqueued: dict[str, tuple[str, float]] = {}
            for number in range(count):
                form = "create" if number % 2 else "one"
                values = model.values(number)
                before = time.time()
                with transaction.atomic():
                    if form == "one":
                        job = model.objects.enqueue(**values)
                    else:
                        job = model.objects.create(**values).enqueue()
                enqueued[str(job.pk)] = (form, before)
                time.sleep(spacing)
            worker.wait_until(succeeded(count, model))
            check_exactly_once(model.objects.all(), count, worker.performed())
        started = {key: began for key, began, _ in stamps.read(path)}
    if started.keys() != enqueued.keys():
        raise BenchError(f"{len(enqueued)} jobs enqueued but {len(started)} stamped a start")
    results: Results = {}
    for form, prefix in (("one", ""), ("create", "create_")):
        waits = [
            (started[key] - before) * 1000
            for key, (made, before) in enqueued.items()
            if made == form
        ]
        for key, value in percentiles(waits).items():
            results[f"{configuration.slug}_{prefix}{key}"] = value
    return results


def explain_claim(jobs: int, threads: int) -> str:
    """EXPLAIN ANALYZE of one claim with `jobs` pending; rolled back, as it claims for real.

    It reads the engine's own claim statement, a private API: if that changes shape, the
    plan is reported as not taken rather than stopping the benchmark.
    """
    rows = queue_jobs(jobs)
    backend = engine_for("default")
    try:
        backend.prepare_claiming_session()  # as a worker's main thread does before its claims
        sql, params = backend._claim_statement(
            NoopJob, queue=None, worker="bench", now=timezone.now(), limit=threads
        )
    except (AttributeError, TypeError) as exc:
        rows.delete()
        return f"not taken: the engine's claim statement changed ({exc})"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
        transaction.set_rollback(True)
    rows.delete()
    return plan


def claim_plans(model: type[BenchJob], jobs: int, limit: int) -> str:
    """EXPLAIN ANALYZE of every claim statement one `engine.claim()` of `limit` rows sends
    with `jobs` rows of `model` pending (a limited model's: each round), captured as the claim
    runs and explained in a second transaction on the same claiming session; both rolled
    back, as they claim for real.

    The engine runs its hot path below Django's cursor (no `execute_wrapper` sees it), so the
    capture replaces this engine's private `_fetch` for the one claim: if that changes shape,
    the plan is reported as not taken rather than stopping the benchmark. The claim lock (a
    SELECT) is left out.
    """
    rows = queue_jobs(jobs, model)
    backend = engine_for("default")
    backend.prepare_claiming_session()  # as a worker's main thread does before its claims
    sent: list[tuple[str, list]] = []
    fetch = getattr(backend, "_fetch", None)
    if fetch is None:
        rows.delete()
        return "not taken: the engine has no _fetch to capture"

    def capture(sql: str, params: list) -> list[tuple]:
        if "RETURNING" in sql:
            sent.append((sql, list(params)))
        return fetch(sql, params)

    backend._fetch = capture
    try:
        with transaction.atomic():
            backend.claim(model, queue=None, worker="bench", now=timezone.now(), limit=limit)
            transaction.set_rollback(True)
    finally:
        del backend._fetch
    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        for number, (sql, params) in enumerate(sent, 1):
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            plan = "\n".join(line for (line,) in cursor.fetchall())
            plans.append(f"round {number} of {len(sent)}, {limit} rows wanted: {sql}\n{plan}")
        transaction.set_rollback(True)
    rows.delete()
    return "\n\n".join(plans) or "not taken: the claim sent no statement with RETURNING"


def migrate(settings: str) -> None:
    """Create the tables of a settings module's apps, in a subprocess that loads it."""
    with Process(
        ["manage.py", "migrate", "--verbosity", "0"], {"DJANGO_SETTINGS_MODULE": settings}
    ) as process:
        process.wait(timeout=600)


def scans() -> int:
    """Sequential plus index scans so far of NoopJob's table and W5's 19 empty ones."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables"
            " WHERE relname = %s OR relname LIKE %s",
            [NoopJob._meta.db_table, "bench\\_many\\_%"],
        )
        return int(cursor.fetchone()[0])


def idle_scans_per_s(configuration: Configuration) -> float:
    """Table scans per second over the 20 job tables while a worker has nothing to do.

    PostgreSQL flushes a backend's counters at most once a second, so the window starts
    after the worker has been idle a while and lasts IDLE_SECONDS.
    """
    empty_table()
    with WorkerProcess(configuration) as worker:
        worker.wait_until_idle()
        time.sleep(2)
        first = scans()
        time.sleep(IDLE_SECONDS)
        return (scans() - first) / IDLE_SECONDS


def backlog_drain(configuration: Configuration, jobs: int, backlog_rows: int) -> Results:
    """One W6 run: `backlog_rows` pending rows; 2 processes run until `jobs` have started,
    then stop gracefully (SIGTERM). Jobs/s over the rows done, each checked done once."""
    empty_table()
    fill_pending(backlog_rows)
    target = min(jobs, backlog_rows)
    with WorkerProcess(configuration, "--processes", "2") as worker:
        worker.wait_until(lambda: worker.starts_so_far() >= target, poll=0.1)
        worker.stop()
        performed = worker.performed()
    done = NoopJob.objects.filter(state="succeeded")
    found = done.aggregate(rows=Count("pk"), attempts_1=Count("pk", filter=Q(attempts=1)))
    running = NoopJob.objects.filter(state="running").count()
    done_pks = {str(pk) for pk in done.values_list("pk", flat=True)}
    twice = sorted(int(pk) for pk, times in performed.items() if times > 1)
    if running or found["attempts_1"] != found["rows"] or twice or done_pks != set(performed):
        raise BenchError(
            f"EXACTLY-ONCE VIOLATED in the backlog: {found}, {running} left running, "
            f"{len(performed)} started by the log, started more than once: {twice[:20]}"
        )
    result = {"2p_jobs_per_s": rate(done, found["rows"]), "done": found["rows"]}
    empty_table()
    return result


def memory_curve(configuration: Configuration, jobs: int) -> Results:
    """The worker's RSS idle, then after each batch of 10,000 jobs it drained (one run)."""
    empty_table()
    with WorkerProcess(configuration) as worker:
        worker.wait_until_idle()
        curve = [(0, worker.rss_mb())]
        done = 0
        while done < jobs:
            batch = min(MEMORY_BATCH, jobs - done)
            NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(batch))
            done += batch
            worker.wait_until(succeeded(done))
            curve.append((done, worker.rss_mb()))
        check_exactly_once(NoopJob.objects.all(), done, worker.performed())
        threads, served = worker.served()
    return {
        "idle_mb": curve[0][1],
        "final_mb": curve[-1][1],
        "growth_mb": curve[-1][1] - curve[0][1],
        "curve": curve,
        "configuration": configuration.label,
        f"{configuration.slug}_threads": threads,
        f"{configuration.slug}_served": served,
    }
