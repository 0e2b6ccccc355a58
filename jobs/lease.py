"""Leases: how a running job proves its worker is still alive.

A claimed job's row carries `lease_expires_at`. While the job runs, a background thread
renews the lease every quarter of `JOBS_LEASE_SECONDS` (and writes where the job is, the
stack of the thread performing it, for its admin page: `stack`, `stack_at`); a process that
is killed, crashes or freezes stops renewing, the lease runs out, and any worker rescues the
job (`JobQuerySet.rescue`). Renewal is guarded by the attempt number and claimant, so it
never revives a lease on a row that has moved on.

Renewal never queues behind a row lock. A job may lock its own row (`set_progress()` or
`save()` inside its own `transaction.atomic()`); a renewal waiting for that lock would hold
up the renewal of every other job in the process, until their leases ran out and they were
run again elsewhere. So the held rows are locked with SKIP LOCKED and renewed in one
statement per model, and each row found locked gets a thread of its own that waits for the
lock on its own connection and renews the lease the moment the job's transaction lets go.
Rescue skips locked rows, and that waiting renewal holds the row from the moment the job's
lock is gone, so no rescuer can take the row in between, however long the job held it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import Case, Value, When

from jobs import timesource
from jobs.conf import heartbeat_interval, lease_duration
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.joblog import stack_of
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

# Seconds between two writes of the held jobs' stacks, when renewals are further apart.
STACK_INTERVAL = 5.0


class LeaseKeeper:
    """Renews the leases of the jobs it holds until stopped; `on_beat` runs after each renewal.

    Use it as a context manager around the jobs' execution. The thread has its own database
    connection, so renewals do not wait for a job's long transaction. Each beat also reads
    the database's clock (`timesource.synchronise`), so this process's "now" stays the
    database's.
    """

    def __init__(
        self,
        *,
        on_beat: Callable[[], None] | None = None,
        on_kill: Callable[[Any], None] | None = None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self._on_beat = on_beat
        self._on_kill = on_kill
        self._using = using
        self._held: dict[tuple[str, Any], Any] = {}
        self._waiters: dict[tuple[str, Any], threading.Thread] = {}  # see `_wait_for_lock`
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._soon = threading.Event()  # `beat_soon()`: beat now rather than at the interval
        self._thread = threading.Thread(target=self._run, name="jobs-lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._soon.set()
        self._thread.join()

    def beat_soon(self) -> None:
        """Beat now, not at the next interval: someone asked where the held jobs are (the
        admin's "Refresh stack"). Any thread."""
        self._soon.set()

    def hold(self, job: Any) -> None:
        with self._lock:
            self._held[_key(job)] = job

    def release(self, job: Any) -> None:
        with self._lock:
            self._held.pop(_key(job), None)

    def held(self) -> list:
        with self._lock:
            return list(self._held.values())

    def beat(self) -> None:
        """Read the database's clock, renew every held lease, then run `on_beat`."""
        timesource.synchronise(self._using)
        self._renew(self.held())
        if self._on_beat is not None:
            self._on_beat()

    def _renew(self, jobs: list) -> None:
        until = timesource.now() + lease_duration()
        renewal = renew_leases(jobs, until)
        self._killed(renewal.killed)
        for job in renewal.lost:
            if _key(job) in self._held:  # else let go meanwhile: its outcome is in hand
                self._lose(job)
        for job in renewal.locked:
            with self._lock:
                if _key(job) not in self._held or _key(job) in self._waiters:
                    continue
                waiter = threading.Thread(
                    target=self._wait_for_lock, args=(job,), name="jobs-lease-waiter", daemon=True
                )
                self._waiters[_key(job)] = waiter
            logger.warning(
                "could not renew the lease of %s: its row is locked (by the job's own "
                "transaction?); renewing it as soon as the lock is let go",
                job.label,
            )
            waiter.start()

    def _killed(self, jobs: list) -> None:
        """Pass on the held attempts an operator asked to kill, each once (`on_kill`)."""
        for job in jobs:
            if self._on_kill is not None and not getattr(job, "_kill_heard", False):
                job._kill_heard = True
                self._on_kill(job)

    def _wait_for_lock(self, job: Any) -> None:
        """Wait for the lock on `job`'s row, on this thread's own connection, then renew."""
        try:
            if renew_when_unlocked(job) is False and _key(job) in self._held:
                self._lose(job)
        except CONNECTION_ERRORS as exc:
            logger.warning("could not renew the lease of %s (%s)", job.label, exc)
        except Exception:
            logger.exception("renewing the lease of %s failed", job.label)
        finally:
            with self._lock:
                self._waiters.pop(_key(job), None)
            connections.close_all()

    def _lose(self, job: Any) -> None:
        logger.warning(
            "%s lost its claim while running (its lease ran out and the row moved on); it is "
            "asked to stop, and its outcome won't be kept",
            job.label,
        )
        job.lose_claim()
        self.release(job)

    def _run(self) -> None:
        # The database may be away: keep trying every beat. Leases run out only if it stays
        # away longer than a lease, and then rescue is the right outcome anyway. Between
        # renewals, every `STACK_INTERVAL` seconds (or at once when asked, `beat_soon()`), it
        # writes where the held jobs are.
        outage = Outage("renewing leases")
        renew_at = time.monotonic() + heartbeat_interval()
        try:
            while not self._stop.is_set():
                self._soon.wait(max(0.0, min(STACK_INTERVAL, renew_at - time.monotonic())))
                self._soon.clear()
                if self._stop.is_set():
                    break
                renewing = time.monotonic() >= renew_at
                try:
                    if renewing:  # the renewal writes the stacks too
                        renew_at = time.monotonic() + heartbeat_interval()
                        self.beat()
                    else:  # `STACK_INTERVAL` passed, or someone asked
                        self._killed(write_stacks(self.held()))
                except CONNECTION_ERRORS as exc:
                    outage.failed(exc)
                except Exception:
                    # A bug in a beat's housekeeping must not end the renewals: every job in
                    # hand would then be rescued and run again while it is still running.
                    logger.exception("a heartbeat failed; trying again at the next one")
                else:
                    outage.succeeded()
        finally:
            connections.close_all()


class Renewal:
    """What one renewal found: leases renewed, rows locked (not yet renewed), claims lost,
    and attempts an operator asked to kill (`kill_requested_at`)."""

    def __init__(self) -> None:
        self.renewed: list = []
        self.locked: list = []
        self.lost: list = []
        self.killed: list = []


def renew_leases(jobs: Iterable[Job], until: datetime) -> Renewal:
    """Extend these attempts' leases to `until`, without waiting for any row lock.

    Per model and database: one transaction that locks the rows still held by these attempts
    (SKIP LOCKED) and moves their leases. A row not renewed is then read (a read waits for
    no lock): if it is still this attempt's and running, it was locked; otherwise the claim
    is lost, unless the attempt's own outcome has been written (the instance is no longer
    running). Renewed jobs carry the new `lease_expires_at`.
    """
    renewal = Renewal()
    for rows, claims, group in _by_table(jobs):
        with transaction.atomic(using=rows.db):
            free = _lock_free(rows, claims)
            if free:
                rows.filter(pk__in=list(free)).update(lease_expires_at=until)
                _write_stacks(rows, [job for job in group if job.pk in free])
        renewal.killed += [job for job in group if free.get(job.pk) is not None]
        free_pks = set(free)
        missing = [job for job in group if job.pk not in free_pks]
        current = (
            {
                pk: (state, {"attempts": attempts, "claimed_by": claimed_by})
                for pk, state, attempts, claimed_by in rows.filter(
                    pk__in=[job.pk for job in missing]
                ).values_list("pk", "state", "attempts", "claimed_by")
            }
            if missing
            else {}
        )
        for job in group:
            if job.pk in free_pks:
                job.lease_expires_at = until
                renewal.renewed.append(job)
            elif (row := current.get(job.pk)) is not None and row == (
                JobState.RUNNING,
                job._claim(),
            ):
                renewal.locked.append(job)
            elif job.state == JobState.RUNNING:  # not this attempt's own outcome, written
                renewal.lost.append(job)
    return renewal


def stack_interval() -> float:
    """Seconds between two writes of a running job's stack, at most: `STACK_INTERVAL`, or the
    renewals' interval if that is shorter (each renewal writes them too)."""
    return min(STACK_INTERVAL, heartbeat_interval())


def write_stacks(jobs: Iterable[Job]) -> list:
    """Write where each of `jobs` is now on its row, if the row is still its attempt's and
    not locked (a job holding its own row is passed over, as a renewal passes it over).
    Returns those of `jobs` an operator asked to kill (`kill_requested_at`)."""
    killed = []
    for rows, claims, group in _by_table(job for job in jobs if job._thread_id is not None):
        with transaction.atomic(using=rows.db):
            free = _lock_free(rows, claims)
            _write_stacks(rows, [job for job in group if job.pk in free])
        killed += [job for job in group if free.get(job.pk) is not None]
    return killed


def _by_table(jobs: Iterable[Job]) -> Iterator[tuple[models.QuerySet, models.Q, list]]:
    """`jobs` per model and database: the table's rows, the condition that matches each row
    only while it is still that job's attempt (`job._claim()`), and the jobs."""
    groups: dict[tuple[type, str], list] = defaultdict(list)
    for job in jobs:
        groups[(type(job), job._state.db or DEFAULT_DB_ALIAS)].append(job)
    for (model, using), group in groups.items():
        claims = models.Q()
        for job in group:
            claims |= models.Q(pk=job.pk, **job._claim())
        yield model._default_manager.db_manager(using).all(), claims, group


def _lock_free(rows: models.QuerySet, claims: models.Q) -> dict[Any, datetime | None]:
    """Lock the rows still held by these attempts, skipping those locked (by the job itself):
    their keys, each with its `kill_requested_at`."""
    found = (
        rows.filter(claims, state=JobState.RUNNING)
        .select_for_update(skip_locked=True)
        .order_by()
        .values_list("pk", "kill_requested_at")
    )
    return dict(found)


def _write_stacks(rows: models.QuerySet, jobs: list) -> None:
    """Where each of `jobs` is now (the stack of the thread performing it), on its row with
    the time: what a running job's page shows, as of the last renewal."""
    stacks = {job.pk: text for job in jobs if (text := stack_of(job._thread_id, job.mask))}
    if not stacks:
        return
    cases = [When(pk=pk, then=Value(text)) for pk, text in stacks.items()]
    rows.filter(pk__in=list(stacks)).update(
        stack=Case(*cases, output_field=models.TextField()), stack_at=timesource.now()
    )


def renew_when_unlocked(job: Job) -> bool | None:
    """Wait for the row lock on `job`'s row, then renew its lease from the time the lock was
    let go. True if renewed; False if the claim was lost meanwhile; None if the attempt's
    own outcome was written first."""
    rows = type(job)._default_manager.db_manager(job._state.db or DEFAULT_DB_ALIAS).all()
    mine = rows.filter(pk=job.pk, state=JobState.RUNNING, **job._claim())
    with transaction.atomic(using=rows.db):
        if not mine.select_for_update().order_by().values_list("pk", flat=True):
            return None if job.state != JobState.RUNNING else False
        until = timesource.now() + lease_duration()
        mine.update(lease_expires_at=until)
    job.lease_expires_at = until
    return True


def _key(job: Any) -> tuple[str, Any]:
    return (job._meta.label, job.pk)
