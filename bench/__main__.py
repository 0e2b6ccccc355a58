"""`python -m bench`: how fast the framework moves jobs, as users run it, beside its floors.

Runs the workloads described in docs/benchmarks.md against the configured database
(DATABASE_URL: PostgreSQL; MariaDB or MySQL without Celery and the EXPLAIN; or SQLite without
the floors either), each `--runs` times, and prints a table in which every figure names its
configuration (runjobs defaults or `--threads N`; the example project, one job model or 20),
the ratios to the floors, to Celery and between workloads beside the targets, then one line
`BENCH_JSON {...}` holding every number. Every drain is checked for exactly-once: a job lost
or run twice stops the benchmark instead of flattering it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import django
from django.core.management import call_command
from django.db import connection
from psycopg.conninfo import make_conninfo

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from bench import celery_bench, floor  # noqa: E402
from bench.framework import (  # noqa: E402
    backlog_drain,
    claim_plans,
    drains,
    enqueue_rates,
    explain_claim,
    idle_scans_per_s,
    memory_curve,
    migrate,
    pickup_latency,
)
from bench.models import LimitedNoopJob  # noqa: E402
from bench.report import print_report, ratios  # noqa: E402
from bench.rows import Results, empty_table, fill_finished, percentiles, repeat  # noqa: E402
from bench.workers import BenchError, configurations  # noqa: E402

LATENCY_SPACING = 0.02  # seconds between two enqueues in W3 (and the floor's, Celery's)
SKIPPED = "skipped: PostgreSQL only"
FLOOR_SKIPPED = "skipped: PostgreSQL, MariaDB and MySQL only"


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
    parser.add_argument("--backlog-rows", type=at_least(1), default=1_000_000, help="for W6")
    parser.add_argument(
        "--threads", type=at_least(1), default=16, help="runjobs --threads when tuned"
    )
    parser.add_argument(
        "--latency-jobs", type=at_least(1), default=200, help="jobs per latency run"
    )
    parser.add_argument("--memory-jobs", type=at_least(0), default=100_000, help="0 skips it")
    parser.add_argument(
        "--only", type=workload_list, default=list(WORKLOADS), metavar=",".join(WORKLOADS)
    )
    return parser.parse_args(argv)


def postgresql() -> bool:
    return connection.vendor == "postgresql"


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


def floor_mysql_url() -> dict[str, Any]:
    """MySQLdb.connect keyword arguments for the configured database (`bench.floor_mysql`'s
    `url`), so the floor uses the same server; what is not set is left to MySQLdb's defaults."""
    settings = connection.settings_dict
    given = {
        "database": settings["NAME"],
        "user": settings["USER"],
        "passwd": settings["PASSWORD"],
        "host": settings["HOST"],
        "port": int(settings["PORT"]) if settings["PORT"] else None,
    }
    return {key: value for key, value in given.items() if value}


def floor_run(module: ModuleType, url: Any, jobs: int, latency_jobs: int) -> Results:
    """One floor run: enqueue, the one-row and the 100-row drains, pickup latency.

    `module` is `bench.floor` or `bench.floor_mysql` (the same functions, each in its database's
    own SQL) and `url` what that module connects with.
    """
    module.reset(url)
    result: Results = {"enqueue_per_s": module.enqueue(url, jobs)}
    for batch, prefix, name in ((False, "", "one-row"), (True, "batch_", "100-row")):
        for processes in (1, 2):
            module.reset(url)
            module.fill(url, jobs)
            result[f"{prefix}{processes}p_jobs_per_s"], done = module.drain(url, processes, batch)
            if done != jobs:
                raise BenchError(
                    f"the {name} floor drained {done} of {jobs} rows with {processes} process(es)"
                )
    module.reset(url)
    return result | percentiles(module.pickup_latency(url, latency_jobs, LATENCY_SPACING))


def w1(args: argparse.Namespace) -> Results:
    return repeat(args.runs, lambda: enqueue_rates(args.jobs))


def w2(args: argparse.Namespace) -> Results:
    """What users run (defaults, example project) and the best documented (tuned, one model)."""
    configs = configurations(args.threads)
    empty_table()
    return repeat(
        args.runs,
        lambda: (
            drains(configs["defaults_example"], args.jobs) | drains(configs["tuned_one"], args.jobs)
        ),
    )


def w3(args: argparse.Namespace) -> Results:
    configs = configurations(args.threads)
    return repeat(
        args.runs,
        lambda: {
            key: value
            for slug in ("defaults_example", "tuned_one")
            for key, value in pickup_latency(
                configs[slug], args.latency_jobs, LATENCY_SPACING
            ).items()
        },
    )


def w4(args: argparse.Namespace) -> Results:
    """The tuned drains with `--finished-rows` finished rows present, and the claim's plan."""
    empty_table()
    fill_finished(args.finished_rows)
    tuned = configurations(args.threads)["tuned_one"]
    result = repeat(args.runs, lambda: drains(tuned, args.jobs, fresh=False))
    plan = explain_claim(args.jobs, args.threads) if postgresql() else SKIPPED
    empty_table()
    return result | {"finished_rows": args.finished_rows, "explain": plan}


def w5(args: argparse.Namespace) -> Results:
    """20 job models of which one has work, each drain beside the same drain with one model
    in the same run, tuned and defaults; then what an idle worker asks of the 20 tables.

    Each pair's order alternates from run to run (one model first, then 20 models first), so
    neither side is always the one that runs on a machine warmed or loaded by the other.
    """
    configs = configurations(args.threads)
    empty_table()
    pairs = (("tuned_one", "tuned_many"), ("defaults_one", "defaults_many"))
    runs = iter(range(args.runs))

    def one_run() -> Results:
        flip = next(runs) % 2
        order = [slug for pair in pairs for slug in (pair[::-1] if flip else pair)]
        return {
            key: value for slug in order for key, value in drains(configs[slug], args.jobs).items()
        }

    result = repeat(args.runs, one_run)
    if not postgresql():
        return result | {"idle_scans": SKIPPED}
    return result | {
        "idle_scans_per_s_one": idle_scans_per_s(configs["defaults_one"]),
        "idle_scans_per_s_many": idle_scans_per_s(configs["defaults_many"]),
        "idle_scans_method": "pg_stat_user_tables seq_scan + idx_scan, 10 idle seconds",
    }


def w6(args: argparse.Namespace) -> Results:
    tuned = configurations(args.threads)["tuned_one"]
    result = repeat(args.runs, lambda: backlog_drain(tuned, args.jobs, args.backlog_rows))
    return result | {"backlog_rows": args.backlog_rows}


def w7(args: argparse.Namespace) -> Results:
    """Concurrency limits: `--jobs` rows over 100 accounts drained by a worker serving the
    model with a limit of 2 per account, each drain beside the same drain of its twin without
    the limit (runjobs defaults, 1 and 2 processes), then pickup latency of each, a key with
    room; then the limited claim's plan.

    Which side goes first alternates from run to run (as in W5; an even `--runs` gives each
    side the first place as often: the first drain of a run tends to be the slower), and each
    run's ratio of limited over unlimited is taken within the run, so the median ratio is of
    paired figures.
    """
    configs = configurations(args.threads)
    limited, keyed = configs["defaults_limited"], configs["defaults_keyed"]
    runs = iter(range(args.runs))

    def one_run() -> Results:
        order = (keyed, limited) if next(runs) % 2 else (limited, keyed)
        result: Results = {}
        for config in order:
            result |= drains(config, args.jobs)
        for config in order:
            result |= pickup_latency(config, args.latency_jobs, LATENCY_SPACING)
        for key in ("1p_jobs_per_s", "2p_jobs_per_s", "p50_ms", "p95_ms"):
            result[f"paired_{key}"] = (
                result[f"{limited.slug}_{key}"] / result[f"{keyed.slug}_{key}"]
            )
        return result

    result = repeat(args.runs, one_run)
    if not postgresql():
        return result | {"explain": SKIPPED}
    threads = int(result[f"{limited.slug}_1p_threads"])  # a median of an even --runs is a float
    return result | {"explain": claim_plans(LimitedNoopJob, args.jobs, threads)}


def floor_workload(args: argparse.Namespace) -> Results | str:
    if postgresql():
        module, url = floor, floor_url()
    elif connection.vendor == "mysql":
        # Imported here: mysqlclient is only installed where MariaDB or MySQL is used.
        from bench import floor_mysql

        module, url = floor_mysql, floor_mysql_url()
    else:
        return FLOOR_SKIPPED
    return repeat(args.runs, lambda: floor_run(module, url, args.jobs, args.latency_jobs))


def celery_workload(args: argparse.Namespace) -> Results | str:
    if not postgresql():
        return "skipped: compared on PostgreSQL only"
    if reason := celery_bench.unavailable():
        return reason
    return repeat(
        args.runs, lambda: celery_bench.run(args.jobs, args.latency_jobs, LATENCY_SPACING)
    )


def memory(args: argparse.Namespace) -> Results | str:
    if not args.memory_jobs:
        return "skipped: --memory-jobs 0"
    return memory_curve(configurations(args.threads)["defaults_example"], args.memory_jobs)


WORKLOADS: dict[str, Callable[[argparse.Namespace], Results | str]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "floor": floor_workload,
    "celery": celery_workload,
    "memory": memory,
}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configs = configurations(args.threads)
    call_command("migrate", verbosity=0)
    for project in {config.settings for config in configs.values()} - {"bench.settings"}:
        migrate(project)  # the example's domain app, W5's empty job models
    results: Results = {
        "database": connection.vendor,
        "jobs": args.jobs,
        "threads": args.threads,
        "runs": args.runs,
    }
    for name in args.only:
        print(f"running {name}...", file=sys.stderr, flush=True)
        results[name] = WORKLOADS[name](args)
    results["configurations"] = {
        slug: {"label": config.label, "settings": config.settings, "threads": config.threads}
        for slug, config in configs.items()
    }
    results["ratios"] = ratios(results, configs)
    print_report(results, configs)


if __name__ == "__main__":
    main()
