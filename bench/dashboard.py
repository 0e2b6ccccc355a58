"""`python -m bench.dashboard`: what the jobs dashboard costs with a long history.

Fills the benchmark's job table with `--finished-rows` finished rows (default 1,000,000; one
in a hundred failed; one in twenty raised its worker's peak memory, by up to 4 MB, the others
by 0) spread evenly over the last week, as a site that keeps a week of history has them, plus
a live part: a backlog of runnable and scheduled jobs, jobs running and a few workers. Then
it renders the dashboard through the admin `--runs` times and prints how many queries a page
costs and how long it takes (the median), the same for the queries alone
(`jobs.monitoring.dashboard.summarize`, then `memory_growth_by_model`) and the workers page,
what ten live dashboards cost (each reloads every few seconds), and on PostgreSQL the plan of
the per-model query, then one line `BENCH_JSON {...}` with every number. It runs against
DATABASE_URL and replaces what the benchmark's table holds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Case, F, Min, When
from django.db.models.lookups import Exact
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bench.__main__ import at_least  # sets Django up
from bench.models import NoopJob
from bench.rows import empty_table, fill_finished, table_name
from jobs.admin.display import LIVE_INTERVAL_SECONDS
from jobs.models import JobState, Worker
from jobs.models.discovery import served_models
from jobs.monitoring import dashboard

HISTORY = timedelta(days=7)
FAILED_EVERY = 100  # one finished row in a hundred failed
GREW_EVERY = 20  # one in twenty raised its worker's peak memory (by up to GREW_KB), others 0
GREW_KB = 4096
BACKLOG = 1_000  # runnable jobs
SCHEDULED = 100
RUNNING = 16
WORKERS = 4
THREADS = 4
LIVE_TABS = 10  # open live dashboards, each reloading every LIVE_INTERVAL_SECONDS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--finished-rows", type=at_least(0), default=1_000_000)
    parser.add_argument("--runs", type=at_least(1), default=5, help="median of this many")
    return parser.parse_args(argv)


def fill(finished_rows: int) -> None:
    """A week of history, the same number of rows each minute, and a live part on top."""
    empty_table()
    fill_finished(finished_rows)
    now = timezone.now()
    first = NoopJob.objects.aggregate(first=Min("pk"))["first"]
    minutes = int(HISTORY / timedelta(minutes=1))
    per_minute = math.ceil(finished_rows / minutes)
    # Written with the times, as a worker writes it with the outcome: a second UPDATE would
    # move the rows it touches to other pages, and the dashboard would read more of them.
    growth = Case(When(Exact(F("pk") % GREW_EVERY, 1), then=F("pk") % GREW_KB + 1), default=0)
    with transaction.atomic():
        for minute in range(minutes):
            moment = now - timedelta(minutes=minute)
            start = first + minute * per_minute
            NoopJob.objects.filter(pk__gte=start, pk__lt=start + per_minute).update(
                requested_at=moment,
                run_at=moment,
                started_at=moment,
                finished_at=moment,
                memory_growth_kb=growth,
            )
    NoopJob.objects.alias(nth=F("pk") % FAILED_EVERY).filter(nth=0).update(state=JobState.FAILED)
    if connection.vendor == "postgresql":
        # So the live part goes into pages the updates emptied, side by side. Without it, it
        # went where the free space map pointed: the ends of pages of updated history, which
        # since `memory_growth_kb` takes 4 bytes a row hold just one new row each, so the
        # summary read ~1,100 pages instead of ~120 (layout, not the dashboard's code).
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {table_name()}")
    NoopJob.objects.bulk_enqueue(NoopJob() for _ in range(BACKLOG + RUNNING))
    NoopJob.objects.bulk_enqueue((NoopJob() for _ in range(SCHEDULED)), delay=3600)
    running = NoopJob.objects.runnable().order_by("pk")[:RUNNING]
    NoopJob.objects.filter(pk__in=list(running.values_list("pk", flat=True))).update(
        state=JobState.RUNNING, started_at=now, attempts=1, lease_expires_at=now + HISTORY
    )
    Worker.objects.all().delete()
    for number in range(WORKERS):
        Worker.objects.create(
            name=f"bench:{number}",
            host="bench",
            pid=number,
            threads=THREADS,
            started_at=now,
            last_heartbeat_at=now,
            jobs_in_flight=[f"bench.NoopJob#{pk}" for pk in range(THREADS)],
        )
    with connection.cursor() as cursor:
        cursor.execute(f"{'VACUUM ' if connection.vendor == 'postgresql' else ''}ANALYZE")


def timed(runs: int, measure) -> dict[str, float]:
    """Median milliseconds and the number of queries of `measure()`, run `runs` times."""
    took = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            measure()
            took.append((time.perf_counter() - began) * 1000)
    return {"queries": len(queries), "median_ms": statistics.median(took), "max_ms": max(took)}


def page(client: Client, name: str = "admin:jobs_dashboard") -> None:
    response = client.get(reverse(name), HTTP_HOST="localhost")
    if response.status_code != 200:
        raise SystemExit(f"{name} answered {response.status_code}")


def live_tabs(results: dict, tabs: int = LIVE_TABS) -> dict[str, float]:
    """What `tabs` open live dashboards cost (each reloads every `LIVE_INTERVAL_SECONDS`):
    milliseconds of server work, and of the database's queries, per second."""
    loads_per_second = tabs / LIVE_INTERVAL_SECONDS
    return {
        "tabs": tabs,
        "page_ms_per_s": loads_per_second * results["page"]["median_ms"],
        "queries_ms_per_s": loads_per_second * results["summary"]["median_ms"],
    }


def explain() -> str:
    now = timezone.now()
    rows = dashboard._grouped_rows(NoopJob, now)
    return rows.explain(analyze=True, buffers=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    call_command("migrate", verbosity=0)
    fill(args.finished_rows)
    user, _ = get_user_model().objects.update_or_create(
        username="bench-dashboard", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    page(client)  # warm up: templates, the session, the first plans
    summary = dashboard.summarize(served_models())
    results = {
        "database": connection.vendor,
        "finished_rows": args.finished_rows,
        "rows_in_table": NoopJob.objects.count(),
        "job_models": len(served_models()),
        "runs": args.runs,
        "page": timed(args.runs, lambda: page(client)),
        "summary": timed(args.runs, lambda: dashboard.summarize(served_models())),
        # The page asks it of the models that finished jobs in the hour: here, all of them.
        "memory": timed(
            args.runs, lambda: dashboard.memory_growth_by_model(served_models(), timezone.now())
        ),
        "workers_page": timed(args.runs, lambda: page(client, "admin:jobs_worker_changelist")),
        # The page asks one more query for the failures by error type when some failed, and
        # for the memory growth ranking one per model that finished jobs in the hour, plus
        # one per model ranked (its worst job).
        "failed_last_hour": summary.total.failed_last_hour,
        "finished_models": sum(1 for entry in summary.models if entry.counts.finished_last_hour),
        "memory_ranked": len(dashboard.memory_growth_by_model(served_models(), summary.now)),
    }
    results["live_tabs"] = live_tabs(results)
    print(f"{results['database']}: {results['rows_in_table']} rows in {table_name()}, ", end="")
    print(f"{results['job_models']} job models, median of {args.runs} run(s)\n")
    for name in ("page", "summary", "memory", "workers_page"):
        found = results[name]
        print(
            f"{name:12} {found['queries']:>3} queries  {found['median_ms']:>8.1f} ms median"
            f"  {found['max_ms']:>8.1f} ms max"
        )
    tabs = results["live_tabs"]
    print(
        f"\n{tabs['tabs']} live dashboards (a load every {LIVE_INTERVAL_SECONDS} s each): "
        f"{tabs['page_ms_per_s']:.0f} ms of server work per second, "
        f"{tabs['queries_ms_per_s']:.0f} ms of it the dashboard's queries"
    )
    if connection.vendor == "postgresql":
        print(f"\nthe per-model query on {table_name()}:\n{explain()}")
    print("BENCH_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
