"""`python -m bench`: how fast the framework moves jobs, beside a hand-written floor.

Runs the workloads described in docs/benchmarks.md against the configured database
(DATABASE_URL: PostgreSQL, or SQLite without the floor and the EXPLAIN), each `--runs` times,
and prints a table, then one line `BENCH_JSON {...}` holding every number. Every drain is
checked for exactly-once: a job lost or run twice stops the benchmark instead of flattering it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import django
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone
from psycopg.conninfo import make_conninfo

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from bench import floor  # noqa: E402
from bench.models import NoopJob  # noqa: E402
from jobs.db import engine_for  # noqa: E402
from jobs.models import Worker as WorkerRow  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
LATENCY_JOBS = 200
LATENCY_SPACING = 0.02  # seconds between two enqueues in W3
MEMORY_BATCH = 10_000
DRAIN_TIMEOUT = 1800  # seconds a burst worker may take before the benchmark calls it a hang
WAIT_TIMEOUT = 300  # seconds to wait for a running worker to register or catch up
SKIPPED = "skipped: PostgreSQL only"

Results = dict[str, Any]


class BenchError(Exception):
    """The framework did something the benchmark cannot report as a number."""


class WorkerProcess:
    """A real `manage.py runjobs` subprocess, logging at INFO to a temporary file.

    The log lines are part of what a job costs in production, so they are written, not
    silenced; the file also lets `performed()` count runs independently of the table.
    """

    def __init__(self, *options: str) -> None:
        self.command = ["manage.py", "runjobs", *options]
        # Appending, so reading it while the worker writes cannot move where the worker writes.
        self.log = tempfile.TemporaryFile("a+")  # noqa: SIM115 (closed by __exit__)
        self.launched = timezone.now()
        self.process = subprocess.Popen(
            [sys.executable, *self.command],
            cwd=REPO,
            env={**os.environ, "JOBS_LOG_LEVEL": "INFO"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the worker as an operator would (SIGTERM), so no run leaves a worker behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.fail("did not stop within 60 s of SIGTERM")
        self.log.close()

    def fail(self, problem: str) -> NoReturn:
        self.log.seek(0)
        tail = "".join(self.log.readlines()[-20:])
        raise BenchError(f"{' '.join(self.command)} {problem}; end of its log:\n{tail}")

    def wait_until(self, done: Callable[[], bool]) -> None:
        """Poll `done`, failing early if the worker dies and late if it never gets there."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not done():
            if (code := self.process.poll()) is not None:
                self.fail(f"exited with status {code}")
            if time.monotonic() > deadline:
                self.fail(f"did not get there within {WAIT_TIMEOUT} s")
            time.sleep(0.05)

    def wait_until_idle(self) -> None:
        """Registered (its Worker row, not an old one with a reused pid), then time to LISTEN."""
        rows = WorkerRow.objects.filter(pid=self.process.pid, started_at__gte=self.launched)
        self.wait_until(rows.exists)
        time.sleep(0.5)

    def performed(self) -> Counter[str]:
        """How many times the log says each job was started, by primary key."""
        self.log.seek(0)
        return Counter(re.findall(r"bench\.NoopJob#(\d+) started", self.log.read()))

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1]) / 1024


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if (value := int(text)) < minimum:
            raise argparse.ArgumentTypeError(f"{text} is less than {minimum}")
        return value

    return parse


def workload_list(text: str) -> list[str]:
    names = text.split(",")
    if unknown := set(names) - set(WORKLOADS):
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(sorted(unknown))}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=at_least(1), default=3, help="median of this many runs")
    parser.add_argument("--jobs", type=at_least(1), default=10_000, help="jobs per run")
    parser.add_argument("--finished-rows", type=at_least(0), default=1_000_000, help="for W4")
    parser.add_argument("--threads", type=at_least(1), default=16, help="runjobs --threads")
    parser.add_argument("--memory-jobs", type=at_least(0), default=100_000, help="0 skips it")
    parser.add_argument(
        "--only", type=workload_list, default=list(WORKLOADS), metavar=",".join(WORKLOADS)
    )
    return parser.parse_args(argv)


def table_name() -> str:
    return connection.ops.quote_name(NoopJob._meta.db_table)


def empty_table() -> None:
    """Each workload starts from an empty table, so one workload's rows cannot slow another."""
    verb = "TRUNCATE" if connection.vendor == "postgresql" else "DELETE FROM"
    with connection.cursor() as cursor:
        cursor.execute(f"{verb} {table_name()}")


def queue_jobs(jobs: int) -> QuerySet[NoopJob]:
    """bulk_enqueue `jobs` jobs; returns just those rows, whatever else the table holds."""
    previous = NoopJob.objects.aggregate(last=Max("pk"))["last"] or 0
    NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(jobs))
    return NoopJob.objects.filter(pk__gt=previous)


def check_exactly_once(rows: QuerySet[NoopJob], jobs: int, performed: Counter[str]) -> None:
    """Every job ran, once: by the rows (state, attempts) and by the worker's own log."""
    found = rows.aggregate(
        rows=Count("pk"),
        succeeded=Count("pk", filter=Q(state="succeeded")),
        attempts_1=Count("pk", filter=Q(attempts=1)),
    )
    found |= {"starts_logged": performed.total(), "jobs_started": len(performed)}
    if any(value != jobs for value in found.values()):
        twice = sorted(int(pk) for pk, times in performed.items() if times > 1)
        raise BenchError(
            f"EXACTLY-ONCE VIOLATED: {jobs} jobs queued, found {found}; "
            f"started more than once: {twice[:20]}"
        )


def succeeded(jobs: int) -> Callable[[], bool]:
    return lambda: NoopJob.objects.filter(state="succeeded").count() == jobs


def rate(rows: QuerySet[NoopJob], jobs: int) -> float:
    """Jobs/s from the first start to the last finish: Python start-up does not count."""
    span = rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return jobs / (span["last"] - span["first"]).total_seconds()


def drain(jobs: int, threads: int, *options: str) -> dict[str, float]:
    """Queue `jobs`, drain them with `runjobs --burst`, check them, then delete them again."""
    rows = queue_jobs(jobs)
    began = time.perf_counter()
    with WorkerProcess("--burst", "--threads", str(threads), *options) as worker:
        try:
            code = worker.process.wait(timeout=DRAIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.fail(f"did not drain {jobs} jobs within {DRAIN_TIMEOUT} s")
        if code != 0:
            worker.fail(f"exited with status {code}")
        wall = time.perf_counter() - began
        check_exactly_once(rows, jobs, worker.performed())
    result = {"jobs_per_s": rate(rows, jobs), "wall_s": wall}
    rows.delete()
    return result


def drains(jobs: int, threads: int) -> dict[str, float]:
    """One run of W2 (or W4): one worker process, then `--processes 2`."""
    one = drain(jobs, threads)
    two = drain(jobs, threads, "--processes", "2")
    return {
        f"{name}_{key}": value
        for name, run in (("1p", one), ("2p", two))
        for key, value in run.items()
    }


def repeat(runs: int, measure: Callable[[], dict[str, float]]) -> Results:
    """The median of each number over `runs` runs, and every run's numbers to show the noise."""
    each = [measure() for _ in range(runs)]
    return {key: statistics.median(run[key] for run in each) for key in each[0]} | {"runs": each}


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    return {"p50_ms": statistics.median(ordered), "p95_ms": p95, "max_ms": ordered[-1]}


def enqueue_rates(jobs: int) -> dict[str, float]:
    """One W1 run: jobs/s enqueued one per transaction (the usual call), then in bulk."""
    empty_table()
    began = time.perf_counter()
    for _ in range(jobs):
        with transaction.atomic():
            NoopJob.objects.create().enqueue()
    single = jobs / (time.perf_counter() - began)
    empty_table()
    began = time.perf_counter()
    NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(jobs))
    return {"single_jobs_per_s": single, "bulk_jobs_per_s": jobs / (time.perf_counter() - began)}


def pickup_latency(threads: int) -> dict[str, float]:
    """One W3 run: ms from enqueue to start, jobs arriving one by one at an idle worker."""
    empty_table()
    with WorkerProcess("--threads", str(threads)) as worker:
        worker.wait_until_idle()
        for _ in range(LATENCY_JOBS):
            with transaction.atomic():
                NoopJob.objects.create().enqueue()
            time.sleep(LATENCY_SPACING)
        worker.wait_until(succeeded(LATENCY_JOBS))
        check_exactly_once(NoopJob.objects.all(), LATENCY_JOBS, worker.performed())
    stamps = NoopJob.objects.values_list("requested_at", "started_at")
    return percentiles(
        [(started - requested).total_seconds() * 1000 for requested, started in stamps]
    )


def fill_finished(rows: int) -> None:
    """Add `rows` succeeded jobs in one statement: the history a busy site keeps around."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    values = {
        "state": "succeeded",
        "queue": "default",
        "priority": 0,
        "max_attempts": 3,
        "attempts": 1,
        "requested_at": now,
        "run_at": now,
        "started_at": now,
        "finished_at": now,
        "claimed_by": "",
        "error_type": "",
        "error_message": "",
        "error_traceback": "",
        "error_history": "[]",
        "log": "",
    }
    numbers = (
        "generate_series(1, %s)"
        if connection.vendor == "postgresql"
        else "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)"
        " SELECT i FROM n)"
    )
    columns = ", ".join(map(connection.ops.quote_name, values))
    placeholders = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table_name()} ({columns}) SELECT {placeholders} FROM {numbers} AS n",
            [*values.values(), rows],
        )
        cursor.execute(f"ANALYZE {table_name()}")


def explain_claim(jobs: int, threads: int) -> str:
    """EXPLAIN ANALYZE of one claim with `jobs` pending; rolled back, as it claims for real."""
    rows = queue_jobs(jobs)
    backend = engine_for("default")
    backend.prepare_claiming_session()  # as a worker's main thread does before its claims
    sql, params = backend._claim_statement(
        NoopJob, queue=None, worker="bench", now=timezone.now(), limit=threads
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
        transaction.set_rollback(True)
    rows.delete()
    return plan


def floor_url() -> str:
    """libpq connection info for the configured database, so the floor uses the same server."""
    settings = connection.settings_dict
    given = {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "password": settings["PASSWORD"],
        "host": settings["HOST"],
        "port": str(settings["PORT"] or ""),
    }
    return make_conninfo(**{key: value for key, value in given.items() if value})


def floor_run(url: str, jobs: int) -> dict[str, float]:
    """One floor run: the same four measurements, without the framework."""
    floor.reset(url)
    result = {"enqueue_per_s": floor.enqueue(url, jobs)}
    for processes in (1, 2):
        floor.reset(url)
        floor.fill(url, jobs)
        result[f"{processes}p_jobs_per_s"], done = floor.drain(url, processes)
        if done != jobs:
            raise BenchError(
                f"the floor drained {done} of {jobs} rows with {processes} process(es)"
            )
    floor.reset(url)
    return result | percentiles(floor.pickup_latency(url, LATENCY_JOBS, LATENCY_SPACING))


def w1(args: argparse.Namespace) -> Results:
    return repeat(args.runs, lambda: enqueue_rates(args.jobs))


def w2(args: argparse.Namespace) -> Results:
    empty_table()
    return repeat(args.runs, lambda: drains(args.jobs, args.threads))


def w3(args: argparse.Namespace) -> Results:
    return repeat(args.runs, lambda: pickup_latency(args.threads))


def w4(args: argparse.Namespace) -> Results:
    """W2's drains with `--finished-rows` finished rows present, and the claim's plan then."""
    empty_table()
    fill_finished(args.finished_rows)
    result = repeat(args.runs, lambda: drains(args.jobs, args.threads))
    postgresql = connection.vendor == "postgresql"
    plan = explain_claim(args.jobs, args.threads) if postgresql else SKIPPED
    return result | {"finished_rows": args.finished_rows, "explain": plan}


def floor_workload(args: argparse.Namespace) -> Results | str:
    if connection.vendor != "postgresql":
        return SKIPPED
    return repeat(args.runs, lambda: floor_run(floor_url(), args.jobs))


def memory(args: argparse.Namespace) -> Results | str:
    """The worker's RSS idle, then after each batch of 10,000 jobs it drained (one run)."""
    if not args.memory_jobs:
        return "skipped: --memory-jobs 0"
    empty_table()
    with WorkerProcess("--threads", str(args.threads)) as worker:
        worker.wait_until_idle()
        curve = [(0, worker.rss_mb())]
        done = 0
        while done < args.memory_jobs:
            batch = min(MEMORY_BATCH, args.memory_jobs - done)
            NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(batch))
            done += batch
            worker.wait_until(succeeded(done))
            curve.append((done, worker.rss_mb()))
        check_exactly_once(NoopJob.objects.all(), done, worker.performed())
    return {"idle_mb": curve[0][1], "final_mb": curve[-1][1], "curve": curve}


WORKLOADS: dict[str, Callable[[argparse.Namespace], Results | str]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "floor": floor_workload,
    "memory": memory,
}
# Each framework number over its counterpart: (name, (workload, key), (workload, key)).
RATIOS = [
    ("W1 single / floor enqueue", ("W1", "single_jobs_per_s"), ("floor", "enqueue_per_s")),
    ("W2 1 process / floor", ("W2", "1p_jobs_per_s"), ("floor", "1p_jobs_per_s")),
    ("W2 2 processes / floor", ("W2", "2p_jobs_per_s"), ("floor", "2p_jobs_per_s")),
    ("W3 p50 / floor p50", ("W3", "p50_ms"), ("floor", "p50_ms")),
    ("W4 / W2, 1 process", ("W4", "1p_jobs_per_s"), ("W2", "1p_jobs_per_s")),
    ("W4 / W2, 2 processes", ("W4", "2p_jobs_per_s"), ("W2", "2p_jobs_per_s")),
]
# What the table shows: (workload, key, label, unit, target).
ROWS = [
    ("W1", "single_jobs_per_s", "W1 create().enqueue(), one per transaction", "jobs/s", ">= 1200"),
    ("W1", "bulk_jobs_per_s", "W1 bulk_enqueue", "jobs/s", ">= 25000"),
    ("W2", "1p_jobs_per_s", "W2 drain, 1 process", "jobs/s", ">= 1100"),
    ("W2", "2p_jobs_per_s", "W2 drain, --processes 2", "jobs/s", ">= 2000"),
    ("W2", "1p_wall_s", "W2 wall time, 1 process", "s", ""),
    ("W2", "2p_wall_s", "W2 wall time, --processes 2", "s", ""),
    ("W3", "p50_ms", "W3 pickup latency p50", "ms", "<= 3"),
    ("W3", "p95_ms", "W3 pickup latency p95", "ms", "<= 10"),
    ("W3", "max_ms", "W3 pickup latency max", "ms", ""),
    ("W4", "1p_jobs_per_s", "W4 drain with finished rows, 1 process", "jobs/s", ""),
    ("W4", "2p_jobs_per_s", "W4 drain with finished rows, --processes 2", "jobs/s", ""),
    ("floor", "enqueue_per_s", "floor enqueue", "rows/s", ""),
    ("floor", "1p_jobs_per_s", "floor drain, 1 process", "rows/s", ""),
    ("floor", "2p_jobs_per_s", "floor drain, 2 processes", "rows/s", ""),
    ("floor", "p50_ms", "floor pickup latency p50", "ms", ""),
    ("floor", "p95_ms", "floor pickup latency p95", "ms", ""),
    ("memory", "idle_mb", "worker RSS idle", "MB", "<= 80"),
    ("memory", "final_mb", "worker RSS after --memory-jobs", "MB", "flat"),
]
RATIO_TARGETS = {
    "W2 2 processes / floor": ">= 0.75",
    "W4 / W2, 1 process": ">= 0.80",
    "W4 / W2, 2 processes": ">= 0.80",
}


def ratios(results: Results) -> dict[str, float]:
    def number(workload: str, key: str) -> float | None:
        found = results.get(workload)
        return found.get(key) if isinstance(found, dict) else None

    return {
        name: numerator / denominator
        for name, top, bottom in RATIOS
        if (numerator := number(*top)) is not None and (denominator := number(*bottom))
    }


def print_report(results: Results) -> None:
    """The table for people, then every number as one JSON line for tools."""
    print(f"{results['database']}: {results['jobs']} jobs, {results['threads']} threads, ", end="")
    print(f"median of {results['runs']} run(s)\n")
    print(f"{'':48} {'result':>10}  {'unit':7} target")
    for workload, key, label, unit, target in ROWS:
        if isinstance(found := results.get(workload), dict):
            print(f"{label:48} {found[key]:>10.1f}  {unit:7} {target}")
    print()
    for name, value in results["ratios"].items():
        print(f"{name:48} {value:>10.2f}  {'ratio':7} {RATIO_TARGETS.get(name, '')}")
    for workload in WORKLOADS:
        if isinstance(results.get(workload), str):  # skipped
            print(f"{workload}: {results[workload]}")
    if isinstance(found := results.get("memory"), dict):
        print(
            "\nworker RSS (jobs done, MB):", ", ".join(f"{n} {mb:.1f}" for n, mb in found["curve"])
        )
    if isinstance(found := results.get("W4"), dict):
        print(f"\nclaim with {found['finished_rows']} finished rows:\n{found['explain']}")
    print("BENCH_JSON " + json.dumps(results))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    call_command("migrate", verbosity=0)
    results: Results = {
        "database": connection.vendor,
        "jobs": args.jobs,
        "threads": args.threads,
        "runs": args.runs,
    }
    for name in args.only:
        print(f"running {name}...", file=sys.stderr, flush=True)
        results[name] = WORKLOADS[name](args)
    results["ratios"] = ratios(results)
    print_report(results)


if __name__ == "__main__":
    main()
