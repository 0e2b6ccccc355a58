"""What the benchmark prints: each figure with its configuration, the ratios with their targets.

The targets are issue 15's (docs/benchmarks.md), beside the older absolute ones where the
measurement has not changed. A ratio is printed only when both of its figures were taken in
this run, so no ratio mixes two runs (or a run and a skipped workload).
"""

from __future__ import annotations

import json
import operator
from typing import NamedTuple

from bench.rows import Results
from bench.workers import Configuration

Target = tuple[str, float] | None  # (">=" or "<=", bound), or no target
COMPARE = {">=": operator.ge, "<=": operator.le}


class Figure(NamedTuple):
    """One line of the table: `results[workload][key]`, with what it is and its target."""

    workload: str
    key: str
    label: str
    configuration: str = ""
    unit: str = "jobs/s"
    target: Target = None


class Ratio(NamedTuple):
    """One framework figure over its counterpart: (workload, key) over (workload, key)."""

    name: str
    top: tuple[str, str]
    bottom: tuple[str, str]
    target: Target = None


def figures(configs: dict[str, Configuration]) -> list[Figure]:
    """Every figure the table shows, in order."""
    tuned, users = configs["tuned_one"].label, configs["defaults_example"].label
    found = [
        Figure(
            "W1",
            "single_jobs_per_s",
            "W1 create().enqueue(), one per transaction",
            target=(">=", 1200),
        ),
        Figure(
            "W1",
            "one_statement_jobs_per_s",
            "W1 objects.enqueue(), one statement",
            target=(">=", 1200),
        ),
        Figure("W1", "bulk_jobs_per_s", "W1 bulk_enqueue", target=(">=", 25000)),
    ]
    for slug in ("defaults_example", "tuned_one"):
        for p in (1, 2):
            found.append(
                Figure(
                    "W2",
                    f"{slug}_{p}p_jobs_per_s",
                    f"W2 drain, {p} process(es)",
                    configs[slug].label,
                )
            )
            found.append(
                Figure(
                    "W2",
                    f"{slug}_{p}p_wall_s",
                    f"W2 wall time, {p} process(es)",
                    configs[slug].label,
                    "s",
                )
            )
    for slug in ("defaults_example", "tuned_one"):
        for prefix, call in (("", "objects.enqueue()"), ("create_", "create().enqueue()")):
            for key in ("p50", "p95", "max"):
                label = f"W3 pickup {key}, {call} -> perform()"
                found.append(
                    Figure("W3", f"{slug}_{prefix}{key}_ms", label, configs[slug].label, "ms")
                )
    for p in (1, 2):
        found.append(
            Figure(
                "W4",
                f"tuned_one_{p}p_jobs_per_s",
                f"W4 drain beside finished rows, {p} process(es)",
                tuned,
            )
        )
    for slug in ("tuned_one", "tuned_many", "defaults_one", "defaults_many"):
        for p in (1, 2):
            found.append(
                Figure(
                    "W5",
                    f"{slug}_{p}p_jobs_per_s",
                    f"W5 drain, {p} process(es)",
                    configs[slug].label,
                )
            )
    for models in ("one", "many"):
        label = "W5 idle worker, scans of the 20 tables"
        found.append(
            Figure(
                "W5", f"idle_scans_per_s_{models}", label, configs[f"defaults_{models}"].label, "/s"
            )
        )
    for p in (1, 2):
        for slug in ("defaults_limited", "defaults_keyed"):
            label = f"W7 drain, 100 keys, {p} process(es)"
            found.append(Figure("W7", f"{slug}_{p}p_jobs_per_s", label, configs[slug].label))
        found.append(
            Figure(
                "W7",
                f"paired_{p}p_jobs_per_s",
                f"W7 drain, {p} process(es), limited / unlimited",
                "defaults, each side",
                "ratio",
                (">=", 0.7),
            )
        )
    for key in ("p50", "p95"):
        for slug in ("defaults_limited", "defaults_keyed"):
            label = f"W7 pickup {key}, objects.enqueue() -> perform()"
            found.append(Figure("W7", f"{slug}_{key}_ms", label, configs[slug].label, "ms"))
        label = f"W7 pickup {key}, limited / unlimited"
        found.append(Figure("W7", f"paired_{key}_ms", label, "defaults, each side", "ratio"))
    return [
        *found,
        Figure("W6", "2p_jobs_per_s", "W6 drain from the backlog, 2 processes", tuned),
        Figure("W6", "done", "W6 jobs done before the stop", tuned, "jobs"),
        Figure("floor", "enqueue_per_s", "floor enqueue, one row per statement", unit="rows/s"),
        Figure("floor", "1p_jobs_per_s", "floor drain, 1 row per claim, 1 process", unit="rows/s"),
        Figure(
            "floor", "2p_jobs_per_s", "floor drain, 1 row per claim, 2 processes", unit="rows/s"
        ),
        Figure(
            "floor",
            "batch_1p_jobs_per_s",
            "floor drain, 100 rows per claim, 1 process",
            unit="rows/s",
        ),
        Figure(
            "floor",
            "batch_2p_jobs_per_s",
            "floor drain, 100 rows per claim, 2 processes",
            unit="rows/s",
        ),
        Figure("floor", "p50_ms", "floor pickup p50, before INSERT -> claimed", unit="ms"),
        Figure("floor", "p95_ms", "floor pickup p95", unit="ms"),
        Figure("celery", "enqueue_per_s", "Celery .delay(), one per call", unit="tasks/s"),
        Figure("celery", "1p_jobs_per_s", "Celery drain, --concurrency 1", "prefork", "tasks/s"),
        Figure("celery", "2p_jobs_per_s", "Celery drain, --concurrency 2", "prefork", "tasks/s"),
        Figure("celery", "p50_ms", "Celery pickup p50, before .delay() -> task", "defaults", "ms"),
        Figure("celery", "p95_ms", "Celery pickup p95", "defaults", "ms"),
        Figure("memory", "idle_mb", "worker RSS idle", users, "MB", ("<=", 80)),
        Figure("memory", "final_mb", "worker RSS after --memory-jobs", users, "MB"),
        Figure(
            "memory", "growth_mb", "worker RSS growth over --memory-jobs", users, "MB", ("<=", 5)
        ),
    ]


def ratio_list(configs: dict[str, Configuration]) -> list[Ratio]:
    """Each framework figure over its counterpart, with issue 15's target where it sets one."""
    found = [
        Ratio("W1 single / floor enqueue", ("W1", "single_jobs_per_s"), ("floor", "enqueue_per_s")),
        Ratio(
            "W1 single / Celery enqueue",
            ("W1", "single_jobs_per_s"),
            ("celery", "enqueue_per_s"),
            (">=", 1.0),
        ),
        Ratio(
            "W1 one statement / floor enqueue",
            ("W1", "one_statement_jobs_per_s"),
            ("floor", "enqueue_per_s"),
        ),
        Ratio(
            "W1 one statement / Celery enqueue",
            ("W1", "one_statement_jobs_per_s"),
            ("celery", "enqueue_per_s"),
            (">=", 1.0),
        ),
    ]
    targets = {
        ("defaults_example", 2, "1-row floor"): (">=", 0.75),
        ("defaults_example", 2, "Celery"): (">=", 1.0),
        ("tuned_one", 2, "100-row floor"): (">=", 0.20),
    }
    for slug in ("defaults_example", "tuned_one"):
        for p in (1, 2):
            figure = ("W2", f"{slug}_{p}p_jobs_per_s")
            for against, bottom in (
                ("1-row floor", ("floor", f"{p}p_jobs_per_s")),
                ("100-row floor", ("floor", f"batch_{p}p_jobs_per_s")),
                ("Celery", ("celery", f"{p}p_jobs_per_s")),
            ):
                name = f"W2 {p}p [{configs[slug].label}] / {against}"
                found.append(Ratio(name, figure, bottom, targets.get((slug, p, against))))
    for slug in ("defaults_example", "tuned_one"):
        figure, name = ("W3", f"{slug}_p50_ms"), f"W3 p50 [{configs[slug].label}]"
        found.append(Ratio(f"{name} / floor p50", figure, ("floor", "p50_ms"), ("<=", 1.5)))
        found.append(Ratio(f"{name} / Celery p50", figure, ("celery", "p50_ms"), ("<=", 1.0)))
    tuned = configs["tuned_one"].label
    for p in (1, 2):
        key = f"tuned_one_{p}p_jobs_per_s"
        found.append(Ratio(f"W4 / W2, {p}p [{tuned}]", ("W4", key), ("W2", key), (">=", 0.8)))
    for threads in ("tuned", "defaults"):
        for p in (1, 2):
            name = f"W5 / W2, {p}p [{configs[f'{threads}_many'].label} / one model]"
            many, one = (
                ("W5", f"{threads}_{models}_{p}p_jobs_per_s") for models in ("many", "one")
            )
            found.append(Ratio(name, many, one, (">=", 0.9)))
    w6 = Ratio(
        f"W6 / W2, 2p [{tuned}]",
        ("W6", "2p_jobs_per_s"),
        ("W2", "tuned_one_2p_jobs_per_s"),
        (">=", 0.8),
    )
    return [*found, w6]


def number(results: Results, workload: str, key: str) -> float | None:
    found = results.get(workload)
    return found.get(key) if isinstance(found, dict) else None


def ratios(results: Results, configs: dict[str, Configuration]) -> dict[str, float]:
    return {
        ratio.name: numerator / denominator
        for ratio in ratio_list(configs)
        if (numerator := number(results, *ratio.top)) is not None
        and (denominator := number(results, *ratio.bottom))
    }


def judged(value: float, target: Target) -> str:
    if target is None:
        return ""
    sign, bound = target
    return f"{sign} {bound:g}  {'yes' if COMPARE[sign](value, bound) else 'NO'}"


def print_report(results: Results, configs: dict[str, Configuration]) -> None:
    """The table for people, then every number as one JSON line for tools."""
    print(f"{results['database']}: {results['jobs']} jobs per drain, ", end="")
    print(f"median of {results['runs']} run(s)")
    print("configurations: defaults = runjobs without --threads; tuned = --threads N;")
    print("  example project = bench.settings_example (the example's queues and Tasks API on),")
    print("  one model = bench.settings, 20 models = bench.settings_many\n")
    print(f"{'':54} {'configuration':28} {'result':>10}  {'unit':7} target  met")
    for row in figures(configs):
        if (value := number(results, row.workload, row.key)) is not None:
            digits = 2 if row.unit == "ratio" else 1
            line = f"{row.label:54} {row.configuration:28} {value:>10.{digits}f}  {row.unit:7}"
            print(f"{line} {judged(value, row.target)}")
    print()
    targets = {ratio.name: ratio.target for ratio in ratio_list(configs)}
    for name, value in results["ratios"].items():
        print(f"{name:83} {value:>10.2f}  {'ratio':7} {judged(value, targets[name])}")
    print()
    for workload, found in results.items():
        if isinstance(found, str) and found.startswith("skipped"):
            print(f"{workload}: {found}")
    served: dict[str, tuple[int, str]] = {}
    for found in results.values():
        for key, value in found.items() if isinstance(found, dict) else ():
            if key.endswith("_served"):
                slug = key.removesuffix("_served")
                served[slug.removesuffix("_1p").removesuffix("_2p")] = (
                    found[f"{slug}_threads"],
                    value,
                )
    for slug, (threads, labels) in served.items():
        models = labels.split(", ")
        shown = labels if len(models) <= 5 else f"{', '.join(models[:3])}, ..."
        print(f"{configs[slug].label}: {threads:g} thread(s) per process, ", end="")
        print(f"{len(models)} job model(s): {shown}")
    if isinstance(found := results.get("W5"), dict) and "idle_scans_method" in found:
        print(f"W5 idle scans: {found['idle_scans_method']}")
    if isinstance(found := results.get("memory"), dict):
        print(
            "\nworker RSS (jobs done, MB):", ", ".join(f"{n} {mb:.1f}" for n, mb in found["curve"])
        )
    if isinstance(found := results.get("W4"), dict):
        print(f"\nclaim with {found['finished_rows']} finished rows:\n{found['explain']}")
    if isinstance(found := results.get("W7"), dict):
        print(f"\nW7 limited claim with {results['jobs']} pending rows:\n{found['explain']}")
    print("BENCH_JSON " + json.dumps(results))
