"""Health checks: is every queue the jobs use served, on time, and mostly succeeding?

The queues checked are those named in `JOBS_QUEUES`, the default queue of every job model a
worker claims from (`served_models()`), and every queue with pending or running rows or with
jobs that ended in the last hour, whichever job model they belong to. A queue the setting
does not name is held to the defaults (`QueueSettings(name)`: an SLA of `DEFAULT_SLA` and the
default failure-rate limit), so a project with no `JOBS_QUEUES` at all is still told that
nothing serves its jobs.

The report says what is wrong, not what is queued: each problem carries a queue name, a short
code and a reason made of counts and durations, never a job's id, fields, model or error, so
it is safe to hand to a load balancer or a monitoring system that anyone may query.

A paused queue (`jobs.models.QueuePause`) is reported as a warning, `paused`, and not held to
its SLA nor its probe: its jobs wait because someone chose so, which is no outage to page
about (critical), yet a pause forgotten for days must stay visible (not ok). A pause of one
job model in a queue leaves that model's waiting rows out of the queue's oldest wait, and is
a `paused` warning too. Its reason is not in the report (it is free text, and the report
is for anyone); the admin and `jobs status` show it.

It is cheap to ask as often as a load balancer does: one grouped query per served job model
over the rows partial indexes cover (pending, running, and the rows that ended in the last
hour), one on the `Worker` table, one on the (small) pauses table, one more for the clock
when schedules exist, and two small look-ups per probed queue. However many jobs a table
holds, the count of queries is the same.

Nothing here knows about HTTP; `jobs.views.health` serves the report as JSON and
`manage.py jobs health` prints it for Nagios.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet

from jobs import timesource
from jobs.conf.queues import QueueSettings, configured_queues
from jobs.cron.schedules import configured_schedules
from jobs.durations import format_duration
from jobs.errors import ConfigurationError
from jobs.models import Job, JobState, LatencyProbe, QueuePause, Worker
from jobs.models.discovery import served_models
from jobs.monitoring.dashboard import WorkerStatus, lookups, queue_pauses, running_workers
from jobs.monitoring.latency import STALE_AFTER, QueueLatency, queue_latency

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
UNKNOWN = "unknown"
# A running worker's clock writes `clock_ticked_at` at least every 30 s; four missed writes
# in a row mean no clock is enqueueing schedules or probes.
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
        return cls(timesource.now(), (Problem(CRITICAL, code, None, reason),), checked=False)

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
    """What one queue's live and recently ended rows say, across job models."""

    pending: int = 0  # runnable now: pending and due
    scheduled: int = 0  # pending, due later
    running: int = 0
    oldest_due_at: datetime | None = None
    ended: int = 0  # succeeded or failed in the last hour
    failed: int = 0  # of those, failed for good


@dataclass(frozen=True)
class _Promised:
    """Why a queue is expected to be served, apart from the jobs waiting on it."""

    named: bool  # JOBS_QUEUES names it
    default: bool  # some served job model puts its rows on it unless told otherwise


def check_health(now: datetime | None = None) -> Report:
    """Run every check as of `now`; critical problems first.

    Raises ConfigurationError if `JOBS_QUEUES` or `JOBS_SCHEDULE` cannot be read, and the
    database's own errors if it cannot be reached: the checks did not run, which is not the
    same as finding nothing wrong.
    """
    now = now or timesource.now()
    try:
        named = configured_queues()
        schedules = configured_schedules()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    workers = running_workers(now).alive
    problems = _clock_problems(now) if schedules else []
    pauses = queue_pauses()
    rows = _rows_by_queue(
        now, paused={(p.queue, p.model) for queue in pauses.values() for p in queue if p.model}
    )
    defaults = default_queues()
    for queue in watched_queues(named, defaults, rows).values():
        promised = _Promised(named=queue.name in named, default=queue.name in defaults)
        paused = any(not pause.model for pause in pauses.get(queue.name, []))
        problems += _queue_problems(queue, rows[queue.name], workers, now, promised, paused)
    problems += [_paused(pause, rows[pause.queue], now) for q in pauses.values() for pause in q]
    problems.sort(key=lambda problem: problem.severity != CRITICAL)
    return Report(now, tuple(problems))


def default_queues(among: Iterable[type[Job]] | None = None) -> set[str]:
    """The queue each served job model (of `among`, if given) puts its rows on unless told
    otherwise.

    Latency probes are left out: the clock puts each on its own queue of `JOBS_QUEUES`, which is
    checked anyway, never on the model's default.
    """
    models = served_models()
    if among is not None:
        allowed = set(among)
        models = [model for model in models if model in allowed]
    return {model._meta.get_field("queue").default for model in models if model is not LatencyProbe}


def watched_queues(
    named: dict[str, QueueSettings], defaults: Iterable[str], used: Iterable[str]
) -> dict[str, QueueSettings]:
    """Every queue to check, with what it promises: those `JOBS_QUEUES` names (in its order),
    then the job models' `defaults` and the queues rows are `used` on, by name, held to the
    defaults."""
    others = sorted(set(defaults).union(used).difference(named))
    return {**named, **{name: QueueSettings(name) for name in others}}


def _clock_problems(now: datetime) -> list[Problem]:
    latest = Worker.objects.filter(state=Worker.State.RUNNING).aggregate(
        latest=Max("clock_ticked_at")
    )["latest"]
    if latest is None:
        reason = "no running worker runs the clock: schedules and probes are not enqueued"
    elif now - latest > CLOCK_STALE_AFTER:
        reason = (
            f"no worker's clock has ticked since {latest.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"({format_duration(now - latest)} ago): schedules and probes are not enqueued"
        )
    else:
        return []
    return [Problem(CRITICAL, "clock_stopped", None, reason)]


def _rows_by_queue(
    now: datetime, paused: set[tuple[str, str]] = frozenset()
) -> defaultdict[str, _QueueRows]:
    """Each queue's rows; a model `paused` in a queue ((queue, label)) adds no oldest wait."""
    found: defaultdict[str, _QueueRows] = defaultdict(_QueueRows)
    for model in served_models():
        for row in _queue_rows(model, now):
            rows = found[row["queue"]]
            due_at = row["oldest_due_at"]
            if (row["queue"], model._meta.label) in paused:
                due_at = None
            if due_at is not None and (rows.oldest_due_at is None or due_at < rows.oldest_due_at):
                rows.oldest_due_at = due_at
            for name in ("pending", "scheduled", "running", "ended", "failed"):
                setattr(rows, name, getattr(rows, name) + row[name])
    return found


def _queue_rows(model: type[Job], now: datetime) -> QuerySet:
    """One row per queue with pending or running jobs, or jobs that ran to an end in the last
    hour: how many of each, and the oldest due pending job. Each side of the OR implies a
    partial index's predicate (`_due`/`_pend` for the pending rows, `_run` for the running
    ones, `_fin` on `(state, finished_at)` for the finished ones), so older history is never
    read."""
    counted = lookups(now)
    return (
        model._default_manager.filter(
            Q(state=JobState.PENDING)
            | Q(state=JobState.RUNNING)
            | Q(**counted["finished_last_hour"])
        )
        .values("queue")
        .annotate(
            **{
                name: Count("pk", filter=Q(**counted[name]))
                for name in ("pending", "scheduled", "running")
            },
            oldest_due_at=Min("run_at", filter=Q(**counted["pending"])),
            ended=Count("pk", filter=Q(**counted["finished_last_hour"])),
            failed=Count("pk", filter=Q(**counted["failed_last_hour"])),
        )
        .order_by()
    )


def _serves(worker: Worker, queue: str) -> bool:
    """A worker registered with no queues serves them all."""
    return not worker.queues or queue in worker.queues.split(",")


def _queue_problems(
    queue: QueueSettings,
    rows: _QueueRows,
    workers: list[WorkerStatus],
    now: datetime,
    promised: _Promised,
    paused: bool = False,
) -> list[Problem]:
    """A paused queue is not late: its SLA and probe are not checked (`_paused` says it)."""
    if paused:
        found = [_unserved(queue, rows, workers, promised), _failing(queue, rows)]
        return [problem for problem in found if problem is not None]
    latency = queue_latency(queue.name, now) if queue.probe else None
    found = [
        _unserved(queue, rows, workers, promised),
        _probe_stale(queue, latency, now),
        _over_sla(queue, rows, latency, now, promised.named),
        _failing(queue, rows),
    ]
    return [problem for problem in found if problem is not None]


def _unserved(
    queue: QueueSettings, rows: _QueueRows, workers: list[WorkerStatus], promised: _Promised
) -> Problem | None:
    """No live worker serves the queue. Critical when runnable jobs wait or `JOBS_QUEUES`
    promises the queue is served; a warning when nothing can start yet but jobs are due
    later, still marked running, or would be enqueued there by default (they would wait
    until a worker comes); nothing for a queue known only from jobs that ended."""
    if any(_serves(status.worker, queue.name) for status in workers):
        return None
    if rows.pending:
        severity, what = CRITICAL, f", and {_jobs(rows.pending)} runnable now"
    elif promised.named:
        severity, what = CRITICAL, ""
    elif rows.scheduled:
        severity, what = WARNING, f", and {_jobs(rows.scheduled)} due later"
    elif rows.running:
        severity, what = WARNING, f", and {_jobs(rows.running)} still marked running"
    elif promised.default:
        severity, what = WARNING, ": jobs enqueued on it by default wait until one does"
    else:
        return None
    return Problem(
        severity,
        "no_worker",
        queue.name,
        f"queue {queue.name}: no live worker serves it{what}; start a worker whose --queues "
        "include it, or one without --queues",
    )


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'} {'is' if count == 1 else 'are'}"


def _probe_stale(
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
        "probe_stale",
        queue.name,
        f"queue {queue.name}: no latency probe has started {since} "
        f"(stale after {format_duration(STALE_AFTER)})",
    )


def _over_sla(
    queue: QueueSettings,
    rows: _QueueRows,
    latency: QueueLatency | None,
    now: datetime,
    named: bool,
) -> Problem | None:
    """The oldest due job's wait, else the probe's: a queue whose backlog just drained
    still shows the wait its last probe measured, until the next one runs."""
    if queue.sla is None:
        return None
    sla = f"its SLA of {format_duration(queue.sla)}"
    if not named:
        sla = f"the default SLA of {format_duration(queue.sla)} (JOBS_QUEUES can set another)"
    if rows.oldest_due_at is not None and now - rows.oldest_due_at > queue.sla:
        waited = format_duration(now - rows.oldest_due_at)
        reason = f"oldest job has waited {waited}, over {sla}"
    elif latency is not None and latency.latency is not None and latency.latency > queue.sla:
        reason = f"live latency (probe) is {format_duration(latency.latency)}, over {sla}"
    else:
        return None
    return Problem(CRITICAL, "over_sla", queue.name, f"queue {queue.name}: {reason}")


def _paused(pause: QueuePause, rows: _QueueRows, now: datetime) -> Problem:
    """A warning: chosen, not broken, but not to be forgotten. Names no model (see above)."""
    what = "one job model of it is paused" if pause.model else "paused"
    waiting = f"; {_jobs(rows.pending)} waiting" if rows.pending and not pause.model else ""
    return Problem(
        WARNING,
        "paused",
        pause.queue,
        f"queue {pause.queue}: {what} since {pause.paused_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        f" UTC ({format_duration(now - pause.paused_at)} ago){waiting}",
    )


def _failing(queue: QueueSettings, rows: _QueueRows) -> Problem | None:
    limit = queue.max_failure_rate
    if limit is None or rows.ended < MIN_FINISHED_FOR_RATE or rows.failed / rows.ended <= limit:
        return None
    return Problem(
        WARNING,
        "failure_rate",
        queue.name,
        f"queue {queue.name}: {rows.failed} of {rows.ended} jobs that ended in the last hour "
        f"failed ({rows.failed / rows.ended:.0%}), over its limit of {limit:.0%}",
    )
