"""`runjobs --processes MIN-MAX`: how many worker processes a supervisor keeps, decided from
what its queues wait for, how busy its processes are and how busy the host's CPUs are.

At each check (every `check_interval()`), `Autoscaler.decide` looks at one `Observation`:

- **Grow** by one process, up to MAX, when the oldest runnable job in the supervisor's queues
  has waited longer than `--scale-up-after` (or than its queue's SLA, if that is shorter),
  at least BUSY_SHARE of the processes' threads are running jobs, and the host's CPUs are
  less than CPU_CEILING busy. Jobs that wait while threads sit idle are held by something
  more processes would not give them (a concurrency or rate limit); jobs that wait while the
  CPUs are full would only be slowed by more processes competing for them. Such a hold is
  a decision too, recorded when it begins.
- **Shrink** by one, down to MIN, when every check for `--scale-down-after` found no runnable
  job that had waited CALM_WAIT, and some process is running no job: that process is
  stopped gracefully (SIGTERM), so no job is handed back.
- **Hysteresis**: the two thresholds are far apart (a wait past the threshold to grow, no
  wait of a second to shrink), a growth waits `--scale-up-after` before the next one (the
  new process needs that long to show an effect), and the calm a shrink needs starts over
  after any change.

The supervisor logs each decision and keeps the latest DECISIONS_KEPT on its `Worker` row,
where the workers page shows them. The observation costs one grouped query per served job
model, over the pending and running rows the partial indexes cover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q

from jobs.conf.queues import DEFAULT_SLA, configured_queues
from jobs.durations import format_duration
from jobs.models import Job, JobState, QueuePause

DEFAULT_SCALE_UP_AFTER = 10.0
DEFAULT_SCALE_DOWN_AFTER = 60.0
# A runnable job that has waited less than this counts as none waiting: a worker takes it
# within its next poll.
CALM_WAIT = 1.0
# Share of the processes' threads that must be running jobs before a wait is blamed on too
# few processes.
BUSY_SHARE = 0.5
# Busy share of the host's CPUs at and above which no process is added.
CPU_CEILING = 0.9
DECISIONS_KEPT = 20


def check_interval(up_after: float) -> float:
    """Seconds between checks: twice per `up_after`, between one and five seconds."""
    return min(5.0, max(1.0, up_after / 2))


@dataclass(frozen=True)
class Observation:
    """What the queues and processes looked like at one check."""

    # (queue, seconds waited, threshold) of the queue furthest past its threshold, if any
    late: tuple[str, float, float] | None
    longest_wait: float  # seconds the oldest runnable job has waited, 0 if none is runnable
    running: dict[int, int]  # pid of each live worker process -> jobs it is running


@dataclass(frozen=True)
class Decision:
    before: int
    after: int
    reason: str
    stop_pid: int | None = None  # shrinking: the process to stop

    def as_row(self, at: datetime) -> dict:
        """As `Worker.scaling_decisions` keeps it."""
        return {"at": at.isoformat(), "from": self.before, "to": self.after, "why": self.reason}


@dataclass
class Autoscaler:
    """Decides, check after check, how many worker processes to keep (see the module)."""

    fewest: int
    most: int
    threads: int
    up_after: float = DEFAULT_SCALE_UP_AFTER
    down_after: float = DEFAULT_SCALE_DOWN_AFTER
    clock: Callable[[], float] = time.monotonic
    _last_change: float = field(default=float("-inf"), init=False)
    _calm_since: float | None = field(default=None, init=False)
    _holding: str | None = field(default=None, init=False)

    def decide(self, processes: int, seen: Observation, cpu_busy: float) -> Decision | None:
        """A change to make (or a hold that begins), given `processes` wanted now."""
        now = self.clock()
        calm = seen.longest_wait < CALM_WAIT
        if not calm:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = now
        if seen.late is not None:
            return self._grow(processes, seen, cpu_busy, now)
        self._holding = None
        if processes <= self.fewest or not calm or now - self._calm_since < self.down_after:
            return None
        idle = [pid for pid, running in seen.running.items() if not running]
        if not idle:
            return None
        self._changed(now)
        reason = f"no job waited for {format_duration(timedelta(seconds=self.down_after))}"
        return Decision(processes, processes - 1, reason, stop_pid=max(idle))

    def _grow(
        self, processes: int, seen: Observation, cpu_busy: float, now: float
    ) -> Decision | None:
        busy = sum(seen.running.values())
        if processes >= self.most or now - self._last_change < self.up_after:
            return None
        queue, waited, threshold = seen.late
        late = (
            f"the oldest job in {queue} waited {format_duration(timedelta(seconds=waited))} "
            f"(over {format_duration(timedelta(seconds=threshold))})"
        )
        if busy < BUSY_SHARE * self.threads * processes:
            return self._hold(processes, "threads", f"{late}, but only {busy} thread(s) are busy")
        if cpu_busy >= CPU_CEILING:
            return self._hold(processes, "cpu", f"{late}, but the CPUs are {cpu_busy:.0%} busy")
        self._holding = None
        self._changed(now)
        return Decision(processes, processes + 1, late)

    def _hold(self, processes: int, cause: str, reason: str) -> Decision | None:
        """A hold is recorded when it begins (or its `cause` changes), not at every check."""
        if self._holding == cause:
            return None
        self._holding = cause
        return Decision(processes, processes, f"held at {processes}: {reason}")

    def _changed(self, now: float) -> None:
        self._last_change = now
        self._calm_since = None


def observe(
    models: Sequence[type[Job]],
    queues: Sequence[str] | None,
    processes: dict[str, int],
    now: datetime,
    up_after: float,
) -> Observation:
    """The oldest runnable job per queue (paused queues and models left out: they wait by
    choice) and the jobs each of `processes` (name -> pid) is running, as of `now`.

    One grouped query per job model: its due pending rows in `queues` (all if None) and its
    running rows claimed by those processes.
    """
    paused = set(QueuePause.objects.values_list("queue", "model"))
    thresholds = _thresholds(up_after)
    oldest: dict[str, datetime] = {}
    running = dict.fromkeys(processes.values(), 0)
    for model in models:
        due = Q(state=JobState.PENDING, run_at__lte=now)
        if queues:
            due &= Q(queue__in=queues)
        rows = (
            model._base_manager.filter(
                due | Q(state=JobState.RUNNING, claimed_by__in=list(processes))
            )
            .values("state", "queue", "claimed_by")
            .annotate(due_at=Min("run_at"), count=Count("pk"))
            .order_by()
        )
        label = model._meta.label
        for row in rows:
            if row["state"] == JobState.RUNNING:
                running[processes[row["claimed_by"]]] += row["count"]
            elif (row["queue"], "") not in paused and (row["queue"], label) not in paused:
                queue, due_at = row["queue"], row["due_at"]
                oldest[queue] = min(due_at, oldest.get(queue, due_at))
    waits = {queue: (now - due_at).total_seconds() for queue, due_at in oldest.items()}
    late = [
        (queue, waited, threshold)
        for queue, waited in waits.items()
        if waited > (threshold := thresholds(queue))
    ]
    return Observation(
        late=max(late, key=lambda entry: entry[1] - entry[2], default=None),
        longest_wait=max(waits.values(), default=0.0),
        running=running,
    )


def _thresholds(up_after: float) -> Callable[[str], float]:
    """Each queue's wait past which it needs more processes: `up_after`, or the queue's SLA
    where that is shorter."""
    try:
        named = configured_queues()
    except ValueError:  # `manage.py check` reports it (jobs.E008); scale by `up_after`
        named = {}

    def threshold(queue: str) -> float:
        sla = named[queue].sla if queue in named else DEFAULT_SLA
        return up_after if sla is None else min(up_after, sla.total_seconds())

    return threshold
