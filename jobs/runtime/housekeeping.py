"""What a worker does at each heartbeat besides renewing leases: rescue other workers' orphaned
jobs, forget long-dead workers, and delete finished rows past their retention.

Run by the lease keeper's thread (`jobs.lease`), so each chore must stay short: a heartbeat
late enough would let a lease run out. Pruning therefore deletes one batch per model per
heartbeat while a backlog lasts, then pauses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from jobs.cron.clock import prune_runs
from jobs.models import Job, JobQuerySet
from jobs.models import Worker as WorkerRow

# Rows of workers silent for this long are deleted; until then the admin shows them stale.
DEAD_WORKER_RETENTION = timedelta(hours=1)
# Finished rows deleted per model per heartbeat, and the pause once none are left to delete.
PRUNE_BATCH = 500
PRUNE_PAUSE_SECONDS = 600


class Housekeeping:
    """The chores of one worker, over its job `models`; `clock`: it runs the schedules, so it
    prunes their runs too."""

    def __init__(self, models: Sequence[type[Job]], *, using: str, clock: bool) -> None:
        self.models = models
        self.using = using
        self.clock = clock
        self._next_prune = 0.0  # monotonic time of the next pruning pass

    def rescue(self, now: datetime) -> None:
        """Each rescued row is logged by `rescue()` itself, with the job's extras."""
        for model in self.models:
            JobQuerySet(model=model, using=self.using).rescue(now)

    def forget_dead_workers(self, now: datetime) -> None:
        WorkerRow.objects.filter(last_heartbeat_at__lt=now - DEAD_WORKER_RETENTION).delete()

    def prune(self, now: datetime) -> None:
        """One batch per model while a backlog lasts, then a pause of PRUNE_PAUSE_SECONDS."""
        if time.monotonic() < self._next_prune:
            return
        backlog = False
        for model in self.models:
            pruned = JobQuerySet(model=model, using=self.using).prune(
                model.retention_policy(), batch=PRUNE_BATCH
            )
            backlog |= pruned == PRUNE_BATCH
        if self.clock:
            backlog |= prune_runs(now, batch=PRUNE_BATCH) == PRUNE_BATCH
        if not backlog:
            self._next_prune = time.monotonic() + PRUNE_PAUSE_SECONDS
