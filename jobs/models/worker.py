"""The `Worker` row: a `runjobs` process, as its heartbeats report it.

(The loop that process runs is `jobs.runtime.worker.WorkerLoop`.)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import F

from jobs import timesource
from jobs.conf import lease_duration
from jobs.db.outage import CONNECTION_ERRORS

logger = logging.getLogger(__name__)


def stale_before(now: datetime) -> datetime:
    """A worker whose last heartbeat is older than this is presumed dead.

    One lease: by then the leases of the jobs it was running have run out too, and other
    workers rescue them as orphans. The one liveness rule: the dashboard, the workers page,
    health and metrics all ask it through `WorkerQuerySet.alive()` or `Worker.is_alive()`.
    """
    return now - lease_duration()


class WorkerQuerySet(models.QuerySet):
    def alive(self, now: datetime) -> WorkerQuerySet:
        """Running by their rows, with a heartbeat fresher than a lease."""
        return self.filter(state=Worker.State.RUNNING, last_heartbeat_at__gt=stale_before(now))

    def stale(self, now: datetime) -> WorkerQuerySet:
        """Running by their rows, but silent for a lease: presumed dead."""
        return self.filter(state=Worker.State.RUNNING).exclude(
            last_heartbeat_at__gt=stale_before(now)
        )


class Worker(models.Model):
    """A `runjobs` process, as long as its heartbeat says it is alive.

    With `--processes`, the supervisor has a row of its own and each worker process it
    starts has one pointing to it.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        STOPPED = "stopped"

    name = models.CharField(max_length=255, unique=True, help_text="host:pid")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.CharField(max_length=1000, blank=True, help_text="Empty: all queues.")
    supervisor = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="processes",
        help_text="The runjobs --processes supervisor that started this worker process.",
    )
    threads = models.PositiveSmallIntegerField(
        default=1, help_text="Jobs it runs at once (per process, for a supervisor)."
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    jobs_in_flight = models.JSONField(default=list, blank=True)
    jobs_performed = models.PositiveIntegerField(default=0)
    clock_ticked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When this worker's clock last ran the schedules (empty: it runs no clock).",
    )

    clock_offset = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "Seconds this worker's host clock is ahead of the database's (negative: behind). "
            "Jobs use the database's time either way; empty on SQLite."
        ),
    )

    memory_mb = models.FloatField(
        "memory (MB)",
        null=True,
        blank=True,
        help_text="Resident memory (RSS) at its last heartbeat.",
    )
    memory_samples = models.JSONField(
        default=list,
        blank=True,
        help_text="[unix time, MB] at each of its latest heartbeats, oldest first: its RSS "
        "over time.",
    )
    memory_recycles = models.PositiveIntegerField(
        default=0,
        help_text="Times --max-memory recycled it (a worker: 0 or 1) or the worker processes "
        "it started (a supervisor).",
    )
    stop_reason = models.CharField(
        max_length=255, blank=True, help_text="Why it stopped, in its own words."
    )
    min_processes = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A supervisor: the fewest worker processes it keeps."
    )
    max_processes = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A supervisor: the most worker processes it keeps."
    )
    processes_wanted = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A supervisor: the worker processes it keeps now."
    )
    scaling_decisions = models.JSONField(
        default=list,
        blank=True,
        help_text="A supervisor with --processes MIN-MAX: its latest decisions, newest last "
        "({at, from, to, reason}).",
    )

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ("-started_at",)

    def __str__(self) -> str:
        return self.name

    def is_alive(self, now: datetime) -> bool:
        """Running by its row, with a heartbeat fresher than a lease (see `stale_before`)."""
        return self.state == self.State.RUNNING and self.last_heartbeat_at > stale_before(now)

    @classmethod
    def register(
        cls,
        name: str,
        *,
        queues: Sequence[str] | None,
        threads: int,
        supervisor: str | None,
        processes: tuple[int, int] | None = None,
    ) -> None:
        """Create or take over this process's row, `name` (`host:pid`; pids get reused).

        `processes`: a supervisor's (fewest, most) worker processes; it keeps the fewest first.
        """
        fewest, most = processes or (None, None)
        now = timesource.now()
        cls.objects.update_or_create(
            name=name,
            defaults={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": ",".join(queues or []),
                "supervisor": cls.objects.filter(name=supervisor).first() if supervisor else None,
                "threads": threads,
                "state": cls.State.RUNNING,
                "started_at": now,
                "last_heartbeat_at": now,
                "stopped_at": None,
                "jobs_in_flight": [],
                "jobs_performed": 0,
                "clock_offset": clock_offset(),
                "memory_mb": None,
                "memory_samples": [],
                "memory_recycles": 0,
                "stop_reason": "",
                "min_processes": fewest,
                "max_processes": most,
                "processes_wanted": fewest,
                "scaling_decisions": [],
            },
        )

    @property
    def autoscaled(self) -> bool:
        """A supervisor started with `--processes MIN-MAX`."""
        return self.max_processes is not None and self.max_processes != self.min_processes

    @classmethod
    def mark_stopped(cls, name: str, *, for_memory: bool = False, **final: Any) -> None:
        """Say process `name` has stopped (on its way out), with its final counts and
        `stop_reason`; `for_memory`: --max-memory recycled it, which its supervisor counts."""
        try:
            if for_memory:
                final["memory_recycles"] = 1
            cls.objects.filter(name=name).update(
                state=cls.State.STOPPED, stopped_at=timesource.now(), jobs_in_flight=[], **final
            )
            if for_memory:
                cls.objects.filter(processes__name=name).update(
                    memory_recycles=F("memory_recycles") + 1
                )
        except CONNECTION_ERRORS as exc:
            logger.warning("could not mark worker %s stopped: %s", name, exc)


def clock_offset() -> float | None:
    """This process's host clock against the database's, as last read (`jobs.timesource`)."""
    reading = timesource.reading()
    return None if reading is None else round(reading.offset, 6)
