"""`JobQuerySet`: the verbs people use on job tables (`Model.objects.failed().requeue()`).

Every change of `state` goes through `JobQuerySet._transition`, one guarded UPDATE that names
the states it may come from, so two processes racing on the same rows cannot both win.

For a model with `unique_on`, every write here that can make a row active (enqueue, requeue)
goes through `jobs.models.unique.refusing_duplicates()`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from django.db import models, transaction

from jobs import signals, timesource
from jobs.db import engine_for
from jobs.db.wakeup import (
    ANY_QUEUE,
    ask_for_stacks,
    hint_for,
    payload,
    wake_workers_on_commit,
)
from jobs.errors import ConfigurationError, DuplicateJob, JobStateError
from jobs.identity import SEPARATOR, parse_identity
from jobs.joblog import with_history
from jobs.models import dependency
from jobs.models.enqueueing import enqueue_changes, enqueue_row, join_open_batch
from jobs.models.options import unique_fields
from jobs.models.unique import key_columns, key_of, refusing_duplicates, unsaved
from jobs.models.worker import Worker
from jobs.states import (
    CANCELLABLE_STATES,
    FINISHED_STATES,
    MOVABLE_STATES,
    REQUEUEABLE_STATES,
    JobState,
    check_transition,
)
from jobs.validation import validate_priority, validate_queue_name

if TYPE_CHECKING:
    from jobs.models.job import Job

logger = logging.getLogger(__name__)

WORKER_LOST = "jobs.WorkerLost"
WORKER_LOST_CHANGES = {
    "lease_expires_at": None,
    "error_type": WORKER_LOST,
    "error_message": "the worker running this attempt stopped renewing its lease "
    "(killed, crashed, or frozen)",
    "error_traceback": "",
}
BULK_BATCH_SIZE = 1000
REFUND_REASON = (
    "its worker was running other jobs too, any of which may have crashed it, and this job "
    "had never lost its worker before"
)


class JobQuerySet(models.QuerySet):
    """The verbs people use on job tables: `Model.objects.failed().requeue()`."""

    def pending(self) -> Self:
        return self.filter(state=JobState.PENDING)

    def running(self) -> Self:
        return self.filter(state=JobState.RUNNING)

    def succeeded(self) -> Self:
        return self.filter(state=JobState.SUCCEEDED)

    def failed(self) -> Self:
        return self.filter(state=JobState.FAILED)

    def cancelled(self) -> Self:
        return self.filter(state=JobState.CANCELLED)

    def scheduled(self, now: datetime | None = None) -> Self:
        """Pending rows whose `run_at` is still to come: what `retry_now()` moves."""
        return self.pending().filter(run_at__gt=now or timesource.now())

    def requeueable(self) -> Self:
        """Failed or cancelled rows: what `requeue()` moves."""
        return self.filter(state__in=REQUEUEABLE_STATES)

    def cancellable(self) -> Self:
        """New or pending rows: what `cancel()` cancels at once."""
        return self.filter(state__in=CANCELLABLE_STATES)

    def stoppable(self) -> Self:
        """Running rows nobody has asked to stop yet: what `cancel()` asks to stop."""
        return self.running().filter(cancel_requested_at=None)

    def runnable(self, now: datetime | None = None) -> Self:
        """Pending rows whose `run_at` has come: what a worker would claim next."""
        return self.pending().filter(run_at__lte=now or timesource.now())

    def requeue(self, *, skip_duplicates: bool = False) -> int:
        """Failed or cancelled rows go back to pending with a fresh set of attempts.

        Other rows are left alone; the return value says how many changed. For a model with
        `unique_on`, a row whose key has an active job (or two of these rows sharing a key)
        refuses the whole call with `DuplicateJob`, and none of the rows moves; with
        `skip_duplicates` (what the admin and `jobs retry` do), the rows go one by one and
        those refused stay as they are.
        """
        if skip_duplicates and unique_fields(self.model):
            moved = 0
            for pk in self.requeueable().order_by("pk").values_list("pk", flat=True):
                with contextlib.suppress(DuplicateJob):
                    moved += self.filter(pk=pk).requeue()
            return moved
        now = timesource.now()
        return refusing_duplicates(
            self.model,
            self.db,
            lambda: self._transition(
                REQUEUEABLE_STATES,
                JobState.PENDING,
                attempts=0,
                requested_at=now,
                run_at=now,
                started_at=None,
                finished_at=None,
                claimed_by="",
                cancel_requested_at=None,
            ),
            lambda: list(self.requeueable().values(*key_columns(self.model))),
        )

    def cancel(self) -> int:
        """Stop these jobs: new or pending rows become cancelled at once; a running job is
        asked to stop (`cancel_requested_at`), which it sees through
        `cancellation_requested()` if it cooperates. Finished rows are left alone.

        Returns how many rows were cancelled or asked to stop.
        """
        now = timesource.now()
        cancelled = self._transition(CANCELLABLE_STATES, JobState.CANCELLED, finished_at=now)
        asked = self.stoppable().update(cancel_requested_at=now)
        return cancelled + asked

    def kill(self) -> int:
        """Running jobs that will not stop: their workers record each attempt as failed for
        good (`JobKilled`, with the stack at that moment) and recycle their processes, the
        only way Python stops a thread (a supervisor starts a fresh one). The workers hear of
        it at once on PostgreSQL, within seconds elsewhere (`jobs.lease`). A job run outside
        a worker (`run()` in a shell) has no process to recycle and is not stopped. Returns
        how many rows were asked.
        """
        asked = (
            self.running().filter(kill_requested_at=None).update(kill_requested_at=timesource.now())
        )
        if asked:
            ask_for_stacks(self.db)  # the stack request makes their workers look now
        return asked

    def retry_now(self) -> int:
        """Scheduled rows (pending, `run_at` still to come) become runnable now.

        For a retry waiting out its backoff, or a job enqueued with a delay that is wanted
        sooner. Returns how many rows moved; idle workers are woken on commit.
        """
        now = timesource.now()
        moved = self.scheduled(now).update(run_at=now)
        if moved:
            wake_workers_on_commit(self.db, [hint_for(ANY_QUEUE, self.model)])
        return moved

    def movable(self) -> Self:
        """Pending and waiting rows: what `move()` moves."""
        return self.filter(state__in=MOVABLE_STATES)

    def move(self, *, queue: str | None = None, priority: int | None = None) -> int:
        """Pending (and waiting) rows go to `queue` and/or take `priority`, keeping their
        place otherwise (`run_at`, `requested_at`, attempts): "drain this queue on the big
        workers". Rows already running, new or finished are left alone. Returns how many
        moved; the new queue's idle workers are woken on commit.
        """
        if queue is None and priority is None:
            raise ValueError("move() needs a queue, a priority or both")
        changes: dict[str, Any] = {}
        if queue is not None:
            changes["queue"] = validate_queue_name(queue)
        if priority is not None:
            changes["priority"] = validate_priority(priority)
        moved = self.movable().update(**changes)
        if moved:
            wake_workers_on_commit(self.db, [hint_for(queue or ANY_QUEUE, self.model)])
        return moved

    def rescue(self, now: datetime | None = None) -> int:
        """Running rows whose lease ran out: their worker was killed, crashed or froze.

        The attempt already counted when it was claimed, so a row with attempts left goes
        back to pending, and one without fails ("worker lost"): a job that kills its worker
        every time cannot take workers down forever. Except once per job: a job whose worker
        held other jobs too when it was lost, and that was never lost before, gets the
        attempt back (`_refunded`), since a neighbour may have crashed the process. One that
        was asked to stop ends cancelled. Each rescue is an entry of the job's
        `error_history`. The rows are locked (skipping any another rescuer holds), so each is
        rescued, logged and signalled (`job_rescued`) exactly once. Returns how many moved.
        """
        now = now or timesource.now()
        running = frozenset({JobState.RUNNING})
        with transaction.atomic(using=self.db):
            orphans = list(
                self.filter(state=JobState.RUNNING, lease_expires_at__lt=now)
                .select_for_update(skip_locked=True)
                .order_by()
            )
            in_flight = _in_flight(orphans, using=self.db)
            for orphan in orphans:
                message = WORKER_LOST_CHANGES["error_message"]
                refunded = _refunded(orphan, in_flight)
                if orphan.cancel_requested_at is not None:
                    orphan.state, changes = JobState.CANCELLED, {"finished_at": now}
                elif refunded or orphan.attempts < orphan.max_attempts:
                    orphan.state, changes = JobState.PENDING, {"run_at": now, "claimed_by": ""}
                    if refunded:  # one more attempt, not one fewer: see `_refunded`
                        changes["max_attempts"] = orphan.max_attempts + 1
                        message += f"; not counted: {REFUND_REASON}"
                else:
                    orphan.state, changes = JobState.FAILED, {"finished_at": now}
                changes.update(
                    WORKER_LOST_CHANGES,
                    error_message=message,
                    error_history=with_history(orphan, now, WORKER_LOST, message, log=orphan.log),
                )
                context = orphan.log_context()
                self.filter(pk=orphan.pk)._transition(
                    running, orphan.state, queue_hint=orphan.queue, **changes
                )
                for name, value in changes.items():
                    setattr(orphan, name, value)
                logger.warning(
                    "%s rescued: its worker %s stopped renewing the lease of attempt %d; now %s",
                    orphan.label,
                    context["job_worker"],
                    orphan.attempts,
                    orphan.state,
                    extra=context,
                )
        for orphan in orphans:
            signals.send(signals.job_rescued, orphan)
        return len(orphans)

    def enqueue(
        self,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        after: Sequence[Job] = (),
        **fields: Any,
    ) -> Job:
        """Create a job with `fields` and enqueue it: one statement, a row already pending.

        `Export.objects.enqueue(report=r)` does what `Export.objects.create(report=r).enqueue()`
        does, in one round trip instead of two, and the row is never seen `new`; on
        PostgreSQL the wake-up rides in the same statement. The options are `enqueue()`'s.
        As with `bulk_enqueue()`, `save()` and the model's `pre_save`/`post_save` signals do
        not run; `job_enqueued` is sent. A duplicate of an active job (`unique_on`) raises
        `DuplicateJob` and inserts nothing. `after` and batches are as for `enqueue()` (they
        add the statements that lock the parents and write the edges).
        """
        job = self.model(**fields)
        changes = enqueue_changes(
            run_at=run_at, delay=delay, priority=priority, queue=queue, using=self.db
        )

        def insert() -> None:
            pending = job.state == JobState.PENDING
            wake = payload(hint_for(job.queue, self.model)) if pending else None
            engine_for(self.db).insert_job(job, wake=wake)

        enqueue_row(job, self.db, changes, after=list(after), insert=insert)
        signals.send(signals.job_enqueued, job)
        return job

    def get_or_enqueue(
        self,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        **fields: Any,
    ) -> tuple[Job, bool]:
        """Enqueue a job with `fields` unless one with the same `unique_on` key is active:
        `(job, True)` for a new pending row, `(active_job, False)` otherwise, as
        `get_or_create()` answers. "Enqueue unless already queued" in one call, whatever the
        race: the database decides which of two concurrent callers creates the row, and a
        caller whose clash finished before it could be read tries again. The active job is
        matched on the key alone; its other fields may differ from `fields`. The options are
        `enqueue()`'s and apply only to a new row.
        """
        if not unique_fields(self.model):
            raise ConfigurationError(
                f"{self.model.__name__}.objects.get_or_enqueue() needs unique_on on the model "
                "to know which active job is the same one; set it, or use enqueue()"
            )
        try:
            job = self.enqueue(run_at=run_at, delay=delay, priority=priority, queue=queue, **fields)
        except DuplicateJob as duplicate:
            return duplicate.existing, False
        return job, True

    def bulk_enqueue(
        self,
        jobs: Iterable[Job],
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        batch_size: int = BULK_BATCH_SIZE,
    ) -> list[Job]:
        """Insert many new jobs as pending, in one transaction, and wake workers once.

        `jobs` are unsaved instances of this model (`Model(field=...)`); `run_at`/`delay`,
        `priority` and `queue` apply to all of them, as in `enqueue()`. Rows are written with
        `bulk_create`, `batch_size` per INSERT, so save() and signals do not run. Returns the
        jobs with their primary keys set.

        For a model with `unique_on` it is all or nothing: a job whose key has an active job,
        or two of `jobs` sharing a key, refuses the whole call with `DuplicateJob`; no row is
        written and `jobs` are left new and unsaved, to be filtered and passed again.
        """
        jobs = list(jobs)
        for job in jobs:
            if type(job) is not self.model or not job._state.adding or job.state != JobState.NEW:
                raise JobStateError(
                    f"bulk_enqueue() takes new, unsaved {self.model.__name__} instances, "
                    f"got {job!r}"
                )
        changes = enqueue_changes(
            run_at=run_at, delay=delay, priority=priority, queue=queue, using=self.db
        )
        for job in jobs:
            for name, value in changes.items():
                setattr(job, name, value)
            job.state = JobState.PENDING
        opened = join_open_batch(jobs)
        with transaction.atomic(using=self.db):
            try:
                created = refusing_duplicates(
                    self.model,
                    self.db,
                    lambda: engine_for(self.db).insert_jobs(
                        self.model, unsaved(jobs), batch_size=batch_size
                    ),
                    lambda: [key_of(job) for job in jobs],
                )
            except DuplicateJob:
                for job in unsaved(jobs):
                    job.state = JobState.NEW
                raise
            if opened is not None and created:
                opened.join(created, self.db)
            wake_workers_on_commit(self.db, {hint_for(job.queue, self.model) for job in created})
            for job in created:
                signals.send(signals.job_enqueued, job)
        return created

    def prune(self, retention: dict[str, float | None], *, batch: int = 1000) -> int:
        """Delete one batch of finished rows older than `retention` (days, per state).

        One short DELETE by primary key per call, so a big backlog never locks the table for
        long; call again while it returns `batch`. The edges naming the deleted rows go with
        them (`jobs.models.dependency.forget`). Returns how many rows it deleted.
        """
        now = timesource.now()
        expired = models.Q(pk__in=[])
        for state in FINISHED_STATES:
            if (days := retention.get(state)) is not None:
                cutoff = now - timedelta(days=days)
                expired |= models.Q(state=state, finished_at__lt=cutoff)
        doomed = list(
            self.filter(expired).order_by("finished_at").values_list("pk", flat=True)[:batch]
        )
        if not doomed:
            return 0
        deleted = self.filter(pk__in=doomed)._raw_delete(self.db)
        dependency.forget(self.model, self.db, doomed)
        return deleted

    def _transition(
        self,
        from_states: frozenset[str],
        to_state: str,
        *,
        queue_hint: str = ANY_QUEUE,
        **changes: Any,
    ) -> int:
        """The one place `state` changes: an UPDATE guarded by the states it may come from.

        Rows that become pending wake idle workers on commit; `queue_hint` names the rows'
        queue when the caller knows it, so workers of other queues can sleep on. A move that
        ends rows, or brings failed or cancelled ones back, also passes that on to the jobs
        waiting on them (`jobs.models.dependency`), in the same transaction: the UPDATE
        returns which moved rows have `has_dependents`.
        """
        check_transition(from_states, to_state)
        rows = self.filter(state__in=from_states)
        if to_state in FINISHED_STATES or from_states & REQUEUEABLE_STATES:
            with transaction.atomic(using=self.db, savepoint=False):
                moved_rows = engine_for(self.db).update_returning(
                    rows, {"state": to_state, **changes}, ("pk", "has_dependents")
                )
                self._pass_on(to_state, moved_rows)
            moved = len(moved_rows)
        else:
            moved = rows.update(state=to_state, **changes)
        if moved and to_state == JobState.PENDING:
            wake_workers_on_commit(
                self.db, [hint_for(changes.get("queue", queue_hint), self.model)]
            )
        return moved

    def _pass_on(self, to_state: str, moved_rows: list[tuple[Any, bool]]) -> None:
        """Tell the jobs waiting on `moved_rows` (primary key, `has_dependents`) that they
        ended in `to_state`, or came back; a requeued child waits again for its parents."""
        followed = [pk for pk, has_dependents in moved_rows if has_dependents]
        if to_state in FINISHED_STATES:
            if followed:
                dependency.ended(self.model, self.db, to_state, followed)
            return
        if followed:
            dependency.revived(self.model, self.db, followed)
        if moved_rows and to_state == JobState.PENDING:
            dependency.requeued(self.model, self.db, [pk for pk, _ in moved_rows])


def _in_flight(orphans: list[Job], *, using: str) -> dict[str, int]:
    """How many jobs each lost worker (by `claimed_by`) had in hand, as far as can be known:
    its orphans in this table, or the jobs its `Worker` row last listed (all job models),
    whichever is more."""
    counts: dict[str, int] = {}
    for orphan in orphans:
        counts[orphan.claimed_by] = counts.get(orphan.claimed_by, 0) + 1
    names = {}
    for claimant in counts:
        with contextlib.suppress(ValueError):  # not a worker's name: only its orphans count
            names[SEPARATOR.join(map(str, parse_identity(claimant)))] = claimant
    listed = Worker.objects.using(using).filter(name__in=names)
    for name, jobs_in_flight in listed.values_list("name", "jobs_in_flight"):
        claimant = names[name]
        counts[claimant] = max(counts[claimant], len(jobs_in_flight or ()))
    return counts


def _refunded(orphan: Job, in_flight: dict[str, int]) -> bool:
    """Whether a rescue gives the lost attempt back: once per job, when its worker had other
    jobs in hand (any of them may have crashed the process; a rescue cannot tell which).
    The one that did loses its worker again on its next try and then counts it, so a job
    that kills its worker every time still ends failed, after at most `max_attempts` + 1
    tries. A worker lost with one job in hand counts it, as that job is the likeliest cause.

    The attempt is given back by raising the row's `max_attempts`, never by lowering
    `attempts`: attempt numbers must not repeat, because (attempt, claimant) fences every
    write of an attempt, and the lost worker may be alive behind a partition, re-claim the
    job after it heals and run the new attempt beside its stale one."""
    if in_flight.get(orphan.claimed_by, 0) < 2:
        return False
    return not any(entry.get("type") == WORKER_LOST for entry in orphan.error_history)
