"""The clock: enqueues each schedule's slots as they come, from inside the worker.

Any number of workers may run it at once. Each slot is claimed by inserting its
`ScheduledRun` row in the transaction that enqueues the slot's job; the unique constraint on
(schedule, slot) lets exactly one insert through, and the others roll back. Nothing is
held between ticks, so a clock that dies takes nothing with it: the next tick of any other
clock carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, router, transaction
from django.db.models import OuterRef, Subquery

from jobs import timesource
from jobs.cron.schedules import ON_TIME_WINDOW, Schedule
from jobs.db.outage import CONNECTION_ERRORS
from jobs.models import Job, ScheduledRun

logger = logging.getLogger(__name__)

# Enqueued slots are kept this long (the latest of each schedule always), for the admin.
RUN_RETENTION = timedelta(days=7)


class Clock:
    """Ticks `schedules`: call `tick()` whenever `seconds_to_next_slot()` says one is due.

    Remembers, per schedule, the latest slot it knows to be taken care of (enqueued by it or
    by another clock, or deliberately skipped), so a tick between slots costs no query.
    """

    def __init__(self, schedules: Sequence[Schedule]) -> None:
        self.schedules = list(schedules)
        self._settled: dict[str, datetime] = {}

    def tick(self, now: datetime | None = None) -> list[Job]:
        """Enqueue every slot that is due and not yet enqueued; returns the jobs this clock
        enqueued. A schedule that fails is logged and retried at its next slot; a lost
        database connection is raised for the caller to wait out."""
        now = now or timesource.now()
        enqueued = []
        for schedule in self.schedules:
            slot = schedule.latest_slot(now)
            settled = self._settled.get(schedule.name)
            if settled is not None and settled >= slot:
                continue
            try:
                job = self._tick_schedule(schedule, slot, now)
            except CONNECTION_ERRORS:
                raise
            except Exception:
                logger.exception(
                    "schedule %s could not enqueue its slot %s",
                    schedule.name,
                    f"{slot:%Y-%m-%d %H:%M}",
                    extra={"schedule": schedule.name},
                )
                job = None
            self._settled[schedule.name] = slot
            if job is not None:
                enqueued.append(job)
        return enqueued

    def seconds_to_next_slot(self, now: datetime | None = None) -> float | None:
        """How long the clock may sleep; None when there is nothing to schedule."""
        now = now or timesource.now()
        slots = [schedule.next_slot(now) for schedule in self.schedules]
        return min((slot - now).total_seconds() for slot in slots) if slots else None

    def _tick_schedule(self, schedule: Schedule, slot: datetime, now: datetime) -> Job | None:
        late = now - slot > ON_TIME_WINDOW
        if late:
            last = last_slot(schedule.name, router.db_for_write(schedule.model))
            if last is None or last >= slot:
                return None  # a new schedule starts with its next slot; or already done
            if schedule.missed == "skip":
                logger.warning(
                    "schedule %s missed its slot %s (no clock ran); skipped, as configured",
                    schedule.name,
                    f"{slot:%Y-%m-%d %H:%M}",
                    extra={"schedule": schedule.name},
                )
                return None
        return enqueue_slot(schedule, slot, now, late=late)


def enqueue_slot(schedule: Schedule, slot: datetime, now: datetime, *, late: bool) -> Job | None:
    """Enqueue `schedule`'s job for `slot` unless some clock already has; None if one had.

    The job is due from `now`, when it joins the queue, not from its slot: a queue's wait
    (and a latency probe's, its latency) measures the workers, not how late the clock was. The
    slot is kept on the `ScheduledRun`.
    """
    using = router.db_for_write(schedule.model)
    with transaction.atomic(using=using):
        try:
            with transaction.atomic(using=using):
                run = ScheduledRun.objects.using(using).create(
                    schedule=schedule.name,
                    slot=slot,
                    enqueued_at=now,
                    late=late,
                    job_model=schedule.model._meta.label,
                )
        except IntegrityError:
            return None
        job = schedule.model(**schedule.fields).enqueue(
            run_at=now, queue=schedule.queue, priority=schedule.priority
        )
        run.job_pk = str(job.pk)
        run.save(update_fields=["job_pk"])
    logger.info(
        "schedule %s enqueued %s for %s%s",
        schedule.name,
        job.label,
        f"{slot:%Y-%m-%d %H:%M:%S}",
        " (late: catching up after the clock was down)" if late else "",
        extra={"schedule": schedule.name},
    )
    return job


def last_slot(schedule: str, using: str | None = None) -> datetime | None:
    runs = ScheduledRun.objects.using(using) if using else ScheduledRun.objects
    return runs.filter(schedule=schedule).values_list("slot", flat=True).first()


@dataclass(frozen=True)
class ScheduleStatus:
    """What the dashboard shows of a schedule."""

    schedule: Schedule
    last_run: ScheduledRun | None
    next_slot: datetime


def schedule_statuses(schedules: Sequence[Schedule], now: datetime) -> list[ScheduleStatus]:
    """Each schedule's latest enqueued slot and its next one: a backward read of the
    (schedule, slot) unique index per schedule."""
    return [
        ScheduleStatus(
            schedule,
            ScheduledRun.objects.filter(schedule=schedule.name).first(),
            schedule.next_slot(now),
        )
        for schedule in schedules
    ]


def prune_runs(now: datetime, *, batch: int = 1000) -> int:
    """Forget enqueued slots older than RUN_RETENTION, but never a schedule's latest: it is
    what tells a clock coming back after downtime that slots were missed."""
    doomed = list(
        ScheduledRun.objects.filter(slot__lt=now - RUN_RETENTION)
        .exclude(slot=Subquery(_latest_slot_of_schedule()))
        .values_list("pk", flat=True)[:batch]
    )
    return ScheduledRun.objects.filter(pk__in=doomed).delete()[0] if doomed else 0


def _latest_slot_of_schedule() -> Subquery:
    return (
        ScheduledRun.objects.filter(schedule=OuterRef("schedule"))
        .order_by("-slot")
        .values("slot")[:1]
    )
