"""The dashboard's numbers: what is new, queued, running, finished, failing and cancelled, across
job models.

Each job model costs one grouped query, and that query reads only the rows it counts, each
kind through a partial index: new rows (`_new`), pending and running rows (`_due`, `_run`),
and rows that finished within the last day (`_fin`, on `(state, finished_at)`). Older history
is never read, so the dashboard costs the same with a million finished rows as with none
(`python -m bench.dashboard` measures it).

Every "last hour" is the same window, `[now - HOUR, now]`: the chart's columns cover exactly
it (its first minute only from `now - HOUR` on), so the "finished 1 h" and "failed 1 h"
numbers are the sums of the chart's bars.

Nothing here knows about HTTP; `jobs.admin.dashboard.DashboardView` shows it in the admin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    When,
)
from django.db.models.functions import TruncMinute

from jobs import timesource
from jobs.db.aggregates import Median
from jobs.models import Job, JobState, QueuePause, Worker

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Finished after running; a cancelled job never ran, so it is neither throughput nor a wait.
RAN = (JobState.SUCCEEDED, JobState.FAILED)


# Error types the dashboard names per model, most frequent first.
ERROR_TYPES_SHOWN = 5


def failures_by_type(
    models: Iterable[type[Job]], now: datetime
) -> list[tuple[type[Job], str, int]]:
    """(model, error type, how many) of the jobs that failed for good in the last hour, the
    most frequent `ERROR_TYPES_SHOWN` types per model: "what is failing, and how?". One
    grouped query per model given (pass only those whose "failed 1 h" is not 0), reading
    the `_fin` index as the summary does."""
    found = []
    for model in models:
        failed = model._base_manager.filter(**lookups(now)["failed_last_hour"])
        grouped = (
            failed.values_list("error_type").annotate(n=Count("pk")).order_by("-n", "error_type")
        )
        found.extend((model, error_type, n) for error_type, n in grouped[:ERROR_TYPES_SHOWN])
    return found


# Job models the memory growth ranking shows, the highest median first.
MEMORY_MODELS_SHOWN = 10


@dataclass
class MemoryGrowth:
    """How far one job model's attempts that finished in the last hour raised their worker's
    peak resident memory (`memory_growth_kb`), in KiB: the median and the worst of them, and
    the job whose attempt was the worst (the latest, if several were as bad; None if it left
    the hour's finished rows between the two queries, requeued for instance)."""

    model: type[Job]
    attempts: int
    median_kb: float
    worst_kb: int
    worst_pk: Any


def memory_growth_by_model(models: Iterable[type[Job]], now: datetime) -> list[MemoryGrowth]:
    """The job models of `models` whose attempts finished in the last hour with a growth on
    record, the highest median growth first (then the worst), at most `MEMORY_MODELS_SHOWN`.

    A model that only needs memory raises its worker's peak once, so its median stays near 0
    however bad its worst; a leak raises it attempt after attempt, so its median does not.
    Each model given costs one aggregate query on the `finished_last_hour` rows (through the
    `_fin` index, as the summary reads them) and, if some of them recorded a growth, one
    more for the worst job: pass only models whose "finished 1 h" is not 0.
    """
    found = []
    for model in models:
        finished = model._base_manager.filter(**lookups(now)["finished_last_hour"])
        row = finished.aggregate(
            attempts=Count("memory_growth_kb"),
            median_kb=Median("memory_growth_kb"),
            worst_kb=Max("memory_growth_kb"),
        )
        if not row["attempts"]:
            continue
        worst = finished.filter(memory_growth_kb=row["worst_kb"]).order_by("-finished_at", "-pk")
        found.append(
            MemoryGrowth(model, **row, worst_pk=worst.values_list("pk", flat=True).first())
        )
    found.sort(key=lambda growth: (-growth.median_kb, -growth.worst_kb, growth.model._meta.label))
    return found[:MEMORY_MODELS_SHOWN]


def lookups(now: datetime) -> dict[str, dict[str, Any]]:
    """What each count counts, as filters both the query and the admin's changelist accept
    (an `__in` lookup is a list here; a URL carries it comma-separated).

    The dashboard's links use the same lookups as its query, so a number and the list it
    opens agree (as of the moment the page was drawn). The query reads exactly the rows
    these lookups match, so each must imply a partial index's predicate.
    """
    return {
        "new": {"state__exact": JobState.NEW},
        "pending": {"state__exact": JobState.PENDING, "run_at__lte": now},
        "scheduled": {"state__exact": JobState.PENDING, "run_at__gt": now},
        "running": {"state__exact": JobState.RUNNING},
        "finished_last_hour": {"state__in": list(RAN), "finished_at__gte": now - HOUR},
        "failed_last_hour": {"state__exact": JobState.FAILED, "finished_at__gte": now - HOUR},
        "failed_last_day": {"state__exact": JobState.FAILED, "finished_at__gte": now - DAY},
        "cancelled_last_day": {"state__exact": JobState.CANCELLED, "finished_at__gte": now - DAY},
    }


@dataclass
class Counts:
    """The numbers of one queue, one job model, or all of them together: one per lookup."""

    new: int = 0
    pending: int = 0
    scheduled: int = 0
    running: int = 0
    finished_last_hour: int = 0
    failed_last_hour: int = 0
    failed_last_day: int = 0
    cancelled_last_day: int = 0
    oldest_wait: timedelta | None = None

    def add(self, other: Counts) -> None:
        for name in NUMBERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.oldest_wait = _longest(self.oldest_wait, other.oldest_wait)


NUMBERS = tuple(number.name for number in fields(Counts) if number.name != "oldest_wait")


@dataclass
class Minute:
    """One column of the charts: the jobs that finished in it, and the longest any waited.

    The first column of the hour counts only from `since` (`now - HOUR`), not from `start`.
    """

    start: datetime
    since: datetime
    succeeded: int = 0
    failed: int = 0
    longest_wait: timedelta | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


@dataclass
class ModelSummary:
    model: type[Job]
    counts: Counts = field(default_factory=Counts)
    queues: dict[str, Counts] = field(default_factory=dict)


@dataclass
class Summary:
    """Everything the dashboard shows about jobs, as of `now`."""

    now: datetime
    models: list[ModelSummary]
    queues: dict[str, Counts]
    total: Counts
    minutes: list[Minute]


def chart_minutes(now: datetime) -> list[Minute]:
    """The last hour as the charts draw it: a column per clock minute from the one holding
    `now - HOUR` to the current one (61 columns; the first and the last are partial)."""
    since = now - HOUR
    first = since.replace(second=0, microsecond=0)
    current = now.replace(second=0, microsecond=0)
    count = (current - first) // MINUTE + 1
    return [
        Minute(start, since=max(start, since))
        for start in (first + index * MINUTE for index in range(count))
    ]


def summarize(models: Iterable[type[Job]], now: datetime | None = None) -> Summary:
    """Count the jobs of `models` per queue and per model: one query per model."""
    now = now or timesource.now()
    minutes = {minute.start: minute for minute in chart_minutes(now)}
    summaries = []
    queues: dict[str, Counts] = {}
    total = Counts()
    for model in models:
        summary = ModelSummary(model)
        for row in _grouped_rows(model, now):
            counts = _counts(row, now)
            if (minute := minutes.get(row["minute"])) is not None:
                minute.succeeded += row["succeeded"]
                minute.failed += row["failed"]
                minute.longest_wait = _longest(minute.longest_wait, row["longest_wait"])
            summary.queues.setdefault(row["queue"], Counts()).add(counts)
            queues.setdefault(row["queue"], Counts()).add(counts)
            summary.counts.add(counts)
            total.add(counts)
        summary.queues = dict(sorted(summary.queues.items()))
        summaries.append(summary)
    return Summary(now, summaries, dict(sorted(queues.items())), total, list(minutes.values()))


def _grouped_rows(model: type[Job], now: datetime) -> QuerySet:
    """One row per queue and minute finished (none for rows that did not finish in the hour).

    The WHERE clause matches exactly the rows some lookup counts, as an OR of conditions each
    of which implies one partial index's predicate, so PostgreSQL answers it with a BitmapOr
    of those indexes and never visits older finished rows.
    """
    counted = lookups(now)
    recently_finished = Q(**counted["finished_last_hour"])
    wait = ExpressionWrapper(F("started_at") - F("run_at"), output_field=DurationField())
    # Every counted row, one side of the OR per partial index: the lookups, less the ones
    # another side already covers (failed in the hour is finished in the hour).
    counted_rows = (
        Q(state=JobState.NEW)
        | Q(state=JobState.PENDING)
        | Q(state=JobState.RUNNING)
        | recently_finished
        | Q(
            state__in=(JobState.FAILED, JobState.CANCELLED),
            finished_at__gte=now - DAY,
        )
    )
    return (
        model._default_manager.filter(counted_rows)
        .annotate(minute=TruncMinute(Case(When(recently_finished, then="finished_at"))))
        .values("queue", "minute")
        .annotate(
            **{name: Count("pk", filter=Q(**lookup)) for name, lookup in counted.items()},
            oldest_due_at=Min("run_at", filter=Q(**counted["pending"])),
            succeeded=Count("pk", filter=Q(state=JobState.SUCCEEDED)),
            failed=Count("pk", filter=Q(state=JobState.FAILED)),
            longest_wait=Max(wait, filter=Q(state__in=RAN)),
        )
        .order_by()
    )


def _longest(*waits: timedelta | None) -> timedelta | None:
    return max((wait for wait in waits if wait is not None), default=None)


def _counts(row: dict[str, Any], now: datetime) -> Counts:
    oldest_due_at = row["oldest_due_at"]
    return Counts(
        **{name: row[name] for name in NUMBERS},
        oldest_wait=now - oldest_due_at if oldest_due_at else None,
    )


def queue_pauses() -> dict[str, list[QueuePause]]:
    """The paused queues, each with its pauses (the whole queue's first, then one per job
    model paused in it): one small query. A paused queue's jobs wait by choice, so the
    dashboard, `jobs status` and health show it as paused, not as late."""
    found: dict[str, list[QueuePause]] = {}
    for pause in QueuePause.objects.order_by("queue", "model"):
        found.setdefault(pause.queue, []).append(pause)
    return found


@dataclass
class WorkerStatus:
    worker: Worker
    stale: bool
    uptime: timedelta
    since_heartbeat: timedelta

    @property
    def busy(self) -> bool:
        return bool(self.worker.jobs_in_flight)


@dataclass
class Workers:
    """The worker processes that say they are running: those that perform jobs, that is.

    A `runjobs --processes` supervisor performs none itself, so it is not counted; its
    worker processes are.
    """

    processes: list[WorkerStatus]

    @property
    def alive(self) -> list[WorkerStatus]:
        return [status for status in self.processes if not status.stale]

    @property
    def stale(self) -> list[WorkerStatus]:
        return [status for status in self.processes if status.stale]

    @property
    def busy(self) -> int:
        return sum(status.busy for status in self.alive)

    @property
    def threads(self) -> int:
        return sum(status.worker.threads for status in self.alive)

    @property
    def threads_busy(self) -> int:
        return sum(len(status.worker.jobs_in_flight) for status in self.alive)


def running_workers(now: datetime | None = None) -> Workers:
    """The `Worker` rows in state running, each flagged stale if its heartbeat is too old."""
    now = now or timesource.now()
    rows = list(
        Worker.objects.filter(state=Worker.State.RUNNING)
        .select_related("supervisor")
        .order_by("host", "name")
    )
    supervisors = {row.supervisor_id for row in rows}
    return Workers(
        [
            WorkerStatus(
                worker=row,
                stale=not row.is_alive(now),
                uptime=now - row.started_at,
                since_heartbeat=now - row.last_heartbeat_at,
            )
            for row in rows
            if row.pk not in supervisors
        ]
    )
