"""The benchmark's rows: queueing, filling, timing and checking `bench.NoopJob` (or W7's models).

Every drain's rate is read from the rows (first `started_at` to last `finished_at`), so a
process's start-up does not count; and every drain is checked for exactly-once before its
rate is believed: a job lost or run twice stops the benchmark instead of flattering it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from bench.models import BenchJob, NoopJob
from bench.workers import BenchError

Results = dict[str, Any]


def table_name(model: type[BenchJob] = NoopJob) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def empty_table(model: type[BenchJob] = NoopJob) -> None:
    """Each workload starts from an empty table, so one workload's rows cannot slow another."""
    verb = "TRUNCATE" if connection.vendor == "postgresql" else "DELETE FROM"
    with connection.cursor() as cursor:
        cursor.execute(f"{verb} {table_name(model)}")


def queue_jobs(jobs: int, model: type[BenchJob] = NoopJob) -> QuerySet[BenchJob]:
    """bulk_enqueue `jobs` jobs (each with `model.values()`); returns just those rows, whatever
    else the table holds."""
    previous = model.objects.aggregate(last=Max("pk"))["last"] or 0
    model.objects.bulk_enqueue(model(**model.values(number)) for number in range(jobs))
    return model.objects.filter(pk__gt=previous)


def fill(rows: int, **values: Any) -> None:
    """Add `rows` rows like `NoopJob(**values)` in one INSERT ... SELECT, then ANALYZE.

    The column values come from the model (its defaults, then `values`), so a column the
    framework adds is filled as the framework would fill it.
    """
    job = NoopJob(**values)
    fields = [field for field in NoopJob._meta.concrete_fields if not field.primary_key]
    params = [field.get_db_prep_save(field.pre_save(job, True), connection) for field in fields]
    numbers = (
        "generate_series(1, %s)"
        if connection.vendor == "postgresql"
        else "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s)"
        " SELECT i FROM n)"
    )
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":  # a recursive CTE stops at 1,000 rows by default
            depth = (
                "max_recursive_iterations"
                if connection.mysql_is_mariadb
                else "cte_max_recursion_depth"
            )
            cursor.execute(f"SET SESSION {depth} = %s", [rows + 1])
        cursor.execute(
            f"INSERT INTO {table_name()} ({columns}) SELECT {placeholders} FROM {numbers} AS n",
            [*params, rows],
        )
        table = "TABLE " if connection.vendor == "mysql" else ""
        cursor.execute(f"ANALYZE {table}{table_name()}")


def fill_finished(rows: int) -> None:
    """Add `rows` succeeded jobs in one statement: the history a busy site keeps around."""
    now = timezone.now()
    fill(
        rows,
        state="succeeded",
        attempts=1,
        requested_at=now,
        run_at=now,
        started_at=now,
        finished_at=now,
    )


def fill_pending(rows: int) -> None:
    """Add `rows` runnable jobs in one statement: a backlog, as after an outage or a burst."""
    now = timezone.now()
    fill(rows, state="pending", requested_at=now, run_at=now)


def check_exactly_once(rows: QuerySet[BenchJob], jobs: int, performed: Counter[str]) -> None:
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


def succeeded(jobs: int, model: type[BenchJob] = NoopJob) -> Callable[[], bool]:
    return lambda: model.objects.filter(state="succeeded").count() == jobs


def rate(rows: QuerySet[BenchJob], jobs: int) -> float:
    """Jobs/s from the first start to the last finish: Python start-up does not count."""
    span = rows.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return jobs / (span["last"] - span["first"]).total_seconds()


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]  # nearest rank
    return {"p50_ms": statistics.median(ordered), "p95_ms": p95, "max_ms": ordered[-1]}


def repeat(runs: int, measure: Callable[[], Results]) -> Results:
    """The median of each number over `runs` runs, and every run's numbers to show the noise.

    A value that is not a number (which job models a worker served) is the first run's.
    """
    each = [measure() for _ in range(runs)]
    return {
        key: statistics.median(run[key] for run in each)
        if isinstance(value, int | float)
        else value
        for key, value in each[0].items()
    } | {"runs": each}
