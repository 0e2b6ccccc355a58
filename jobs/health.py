"""Health checks: is every queue of `JOBS_QUEUES` served, on time, and mostly succeeding?

The report says what is wrong, not what is queued: each problem carries a queue name, a short
code and a reason made of counts and durations, never a job's id, fields or error, so it is
safe to hand to a load balancer or a monitoring system that anyone may query.

It is cheap to ask as often as a load balancer does: one grouped query per job model over the
rows partial indexes cover (pending rows that are due, rows finished in the last hour), one on
the `Worker` table, one more for the clock when schedules exist, and two small look-ups per
heartbeat queue. However many jobs a table holds, the count of queries is the same.

Nothing here knows about HTTP; `jobs.health_view` serves the report as JSON and
`manage.py jobs health` prints it for Nagios.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet

from jobs import clock
from jobs.dashboard import HOUR, RAN, WorkerStatus, lookups, running_workers
from jobs.durations import format_duration
from jobs.errors import ConfigurationError
from jobs.heartbeat import STALE_AFTER, QueueLatency, queue_latency
from jobs.models import Job, JobState, Worker
from jobs.queues import QueueSettings, configured_queues
from jobs.registry import job_models
from jobs.schedules import configured_schedules

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
UNKNOWN = "unknown"
# A running worker's clock writes `clock_ticked_at` at least every 30 s; four missed writes
# in a row mean no clock is enqueueing schedules or heartbeats.
CLOCK_STALE_AFTER = timedelta(minutes=2)
# Fewer finished jobs than this in the last hour say nothing about a queue's failure rate
# (one failure out of two is not a trend), so the check waits for this many.
MIN_FINISHED_FOR_RATE = 10


@dataclass(frozen=True)
class Problem:
    """One thing wrong: `code` is for machines (alert routing), `reason` for people."""

    severity: str
    code: str
    queue: str | None
    reason: str


@dataclass(frozen=True)
class Report:
    """The problems found as of `checked_at`; `checked` is False when the checks could not
    run at all (bad settings, no database), which monitoring calls unknown."""

    checked_at: datetime
    problems: tuple[Problem, ...] = ()
    checked: bool = True

    @classmethod
    def unknown(cls, code: str, reason: str) -> Report:
        return cls(clock.now(), (Problem(CRITICAL, code, None, reason),), checked=False)

    @property
    def status(self) -> str:
        if not self.checked:
            return UNKNOWN
        severities = {problem.severity for problem in self.problems}
        return next((level for level in (CRITICAL, WARNING) if level in severities), OK)

    def as_json(self) -> dict[str, Any]:
        """What the health view answers and `jobs health --json` prints."""
        return {
            "status": self.status,
            "problems": [asdict(problem) for problem in self.problems],
            "checked_at": self.checked_at.isoformat(),
        }


@dataclass
class _QueueRows:
    """What one queue's due and recently finished rows say, across job models."""

    oldest_due_at: datetime | None = None
    succeeded: int = 0
    failed: int = 0


def check_health(now: datetime | None = None) -> Report:
    """Run every check as of `now`; critical problems first.

    Raises ConfigurationError if `JOBS_QUEUES` or `JOBS_SCHEDULE` cannot be read, and the
    database's own errors if it cannot be reached: the checks did not run, which is not the
    same as finding nothing wrong.
    """
    now = now or clock.now()
    try:
        queues = configured_queues()
        schedules = configured_schedules()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    # Read even with no queue to check: a report that says ok must have reached the database.
    workers = running_workers(now).alive
    problems = _clock_problems(now) if schedules else []
    rows = _rows_by_queue(list(queues), now)  # no query when no queue is configured
    for queue in queues.values():
        problems += _queue_problems(queue, rows[queue.name], workers, now)
    problems.sort(key=lambda problem: problem.severity != CRITICAL)
    return Report(now, tuple(problems))


def _clock_problems(now: datetime) -> list[Problem]:
    latest = Worker.objects.filter(state=Worker.State.RUNNING).aggregate(
        latest=Max("clock_ticked_at")
    )["latest"]
    if latest is None:
        reason = "no running worker runs the clock: schedules and heartbeats are not enqueued"
    elif now - latest > CLOCK_STALE_AFTER:
        reason = (
            f"no worker's clock has ticked since {latest.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"({format_duration(now - latest)} ago): schedules and heartbeats are not enqueued"
        )
    else:
        return []
    return [Problem(CRITICAL, "clock_stopped", None, reason)]


def _rows_by_queue(queues: list[str], now: datetime) -> defaultdict[str, _QueueRows]:
    found: defaultdict[str, _QueueRows] = defaultdict(_QueueRows)
    for model in job_models():
        for row in _queue_rows(model, queues, now):
            rows = found[row["queue"]]
            due_at = row["oldest_due_at"]
            if due_at is not None and (rows.oldest_due_at is None or due_at < rows.oldest_due_at):
                rows.oldest_due_at = due_at
            rows.succeeded += row["succeeded"]
            rows.failed += row["failed"]
    return found


def _queue_rows(model: type[Job], queues: list[str], now: datetime) -> QuerySet:
    """One row per queue: its oldest due pending job, and its jobs that ran to an end in the
    last hour. Each side of the OR implies a partial index's predicate (`_due`/`_pend` for
    the pending rows, `_fin` on `(state, finished_at)` for the finished ones), so older
    history is never read."""
    counted = lookups(now)
    due = Q(**counted["pending"])
    return (
        model._default_manager.filter(
            due | Q(state__in=RAN, finished_at__gte=now - HOUR), queue__in=queues
        )
        .values("queue")
        .annotate(
            oldest_due_at=Min("run_at", filter=due),
            succeeded=Count("pk", filter=Q(state=JobState.SUCCEEDED)),
            failed=Count("pk", filter=Q(**counted["failed_last_hour"])),
        )
        .order_by()
    )


def _serves(worker: Worker, queue: str) -> bool:
    """A worker registered with no queues serves them all."""
    return not worker.queues or queue in worker.queues.split(",")


def _queue_problems(
    queue: QueueSettings, rows: _QueueRows, workers: list[WorkerStatus], now: datetime
) -> list[Problem]:
    latency = queue_latency(queue.name, now) if queue.heartbeat else None
    found = [
        _unserved(queue, workers),
        _heartbeat_stale(queue, latency, now),
        _over_sla(queue, rows, latency, now),
        _failing(queue, rows),
    ]
    return [problem for problem in found if problem is not None]


def _unserved(queue: QueueSettings, workers: list[WorkerStatus]) -> Problem | None:
    if any(_serves(status.worker, queue.name) for status in workers):
        return None
    return Problem(
        CRITICAL, "no_worker", queue.name, f"queue {queue.name}: no live worker serves it"
    )


def _heartbeat_stale(
    queue: QueueSettings, latency: QueueLatency | None, now: datetime
) -> Problem | None:
    if latency is None or not latency.stale(now):
        return None
    since = (
        "yet"
        if latency.last_started_at is None
        else f"for {format_duration(now - latency.last_started_at)}"
    )
    return Problem(
        CRITICAL,
        "heartbeat_stale",
        queue.name,
        f"queue {queue.name}: no heartbeat has started {since} "
        f"(stale after {format_duration(STALE_AFTER)})",
    )


def _over_sla(
    queue: QueueSettings, rows: _QueueRows, latency: QueueLatency | None, now: datetime
) -> Problem | None:
    """The oldest due job's wait, else the heartbeat's: a queue whose backlog just drained
    still shows the wait its last heartbeat measured, until the next one runs."""
    if queue.sla is None:
        return None
    sla = format_duration(queue.sla)
    if rows.oldest_due_at is not None and now - rows.oldest_due_at > queue.sla:
        waited = format_duration(now - rows.oldest_due_at)
        reason = f"oldest job has waited {waited}, over its SLA of {sla}"
    elif latency is not None and latency.latency is not None and latency.latency > queue.sla:
        reason = (
            f"live latency (heartbeat) is {format_duration(latency.latency)}, over its SLA of {sla}"
        )
    else:
        return None
    return Problem(CRITICAL, "over_sla", queue.name, f"queue {queue.name}: {reason}")


def _failing(queue: QueueSettings, rows: _QueueRows) -> Problem | None:
    ended = rows.succeeded + rows.failed
    limit = queue.max_failure_rate
    if limit is None or ended < MIN_FINISHED_FOR_RATE or rows.failed / ended <= limit:
        return None
    return Problem(
        WARNING,
        "failure_rate",
        queue.name,
        f"queue {queue.name}: {rows.failed} of {ended} jobs that ended in the last hour failed "
        f"({rows.failed / ended:.0%}), over its limit of {limit:.0%}",
    )
