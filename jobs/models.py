"""The abstract `Job` model: the lifecycle every domain job shares.

A job is a row of its own table, so enqueueing is a write in the application's database: it
commits or rolls back with the data it belongs to. Every change of `state` goes through
`JobQuerySet._transition`, one guarded UPDATE that names the states it may come from, so two
processes racing on the same row cannot both win.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
import traceback
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, Self

from django.db import models, router, transaction
from django.db.backends.utils import names_digest
from django.db.models.base import ModelBase
from django.http import HttpRequest

from jobs import clock, signals, tally
from jobs.backends import backend_for
from jobs.conf import lease_duration, retention_days
from jobs.errors import Cancelled, JobNotRunnable, JobStateError, JobTimeout, Snooze
from jobs.identity import process_identity
from jobs.joblog import JobLog, capturing
from jobs.lease import LeaseKeeper
from jobs.outage import CONNECTION_ERRORS
from jobs.states import (
    ALLOWED_FROM,
    CANCELLABLE_STATES,
    FINISHED_STATES,
    REQUEUEABLE_STATES,
    RUNNABLE_STATES,
    JobState,
)
from jobs.validation import validate_priority, validate_queue_name
from jobs.wakeup import ANY_QUEUE, wake_workers_on_commit

logger = logging.getLogger("jobs")


# Fields only the lifecycle verbs write. `save()` never touches them, so a stale instance
# (an admin form, a shell session, `perform()` saving its own domain fields) cannot undo a
# state change another process made in the meantime.
LIFECYCLE_FIELDS = frozenset(
    {
        "state",
        "requested_at",
        "run_at",
        "started_at",
        "finished_at",
        "attempts",
        "claimed_by",
        "lease_expires_at",
        "error_type",
        "error_message",
        "error_traceback",
        "error_history",
        "progress_done",
        "progress_total",
        "log",
        "cancel_requested_at",
    }
)

# Class attributes a job model may set to give its rows defaults (`queue = "emails"`).
ROW_OPTIONS = ("queue", "priority", "max_attempts", "timeout")

WORKER_LOST = "jobs.WorkerLost"
WORKER_LOST_CHANGES = {
    "lease_expires_at": None,
    "error_type": WORKER_LOST,
    "error_message": "the worker running this attempt stopped renewing its lease "
    "(killed, crashed, or frozen)",
    "error_traceback": "",
}
ERROR_MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 16_000
ERROR_HISTORY_LIMIT = 10
HISTORY_TRACEBACK_LIMIT = 4_000
HISTORY_LOG_LIMIT = 4_000
RETRY_BASE_DELAY = timedelta(seconds=10)
RETRY_MAX_DELAY = timedelta(hours=1)
BULK_BATCH_SIZE = 1000
# set_progress() writes at most this often, however often a job calls it.
PROGRESS_WRITE_INTERVAL = 1.0
# cancellation_requested() reads the row at most this often.
CANCEL_CHECK_INTERVAL = 1.0
MASK = "********"
# Fields an attempt starts afresh: its progress and log are its own.
FRESH_ATTEMPT = {"log": "", "progress_done": None, "progress_total": None}


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

    def runnable(self, now: datetime | None = None) -> Self:
        """Pending rows whose `run_at` has come: what a worker would claim next."""
        return self.pending().filter(run_at__lte=now or clock.now())

    def requeue(self) -> int:
        """Failed or cancelled rows go back to pending with a fresh set of attempts.

        Other rows are left alone; the return value says how many changed.
        """
        now = clock.now()
        return self._transition(
            REQUEUEABLE_STATES,
            JobState.PENDING,
            attempts=0,
            requested_at=now,
            run_at=now,
            started_at=None,
            finished_at=None,
            claimed_by="",
            cancel_requested_at=None,
        )

    def cancel(self) -> int:
        """Stop these jobs: new or pending rows become cancelled at once; a running job is
        asked to stop (`cancel_requested_at`), which it sees through
        `cancellation_requested()` if it cooperates. Finished rows are left alone.

        Returns how many rows were cancelled or asked to stop.
        """
        now = clock.now()
        cancelled = self._transition(CANCELLABLE_STATES, JobState.CANCELLED, finished_at=now)
        asked = self.running().filter(cancel_requested_at=None).update(cancel_requested_at=now)
        return cancelled + asked

    def retry_now(self) -> int:
        """Scheduled rows (pending, `run_at` still to come) become runnable now.

        For a retry waiting out its backoff, or a job enqueued with a delay that is wanted
        sooner. Returns how many rows moved; idle workers are woken on commit.
        """
        now = clock.now()
        moved = self.pending().filter(run_at__gt=now).update(run_at=now)
        if moved:
            wake_workers_on_commit(self.db, [ANY_QUEUE])
        return moved

    def rescue(self, now: datetime | None = None) -> int:
        """Running rows whose lease ran out: their worker was killed, crashed or froze.

        The attempt already counted when it was claimed, so a row with attempts left goes
        back to pending, and one without fails ("worker lost"): a job that kills its worker
        every time cannot take workers down forever. One that was asked to stop ends
        cancelled. The rows are locked (skipping any another rescuer holds), so each is
        rescued, logged and signalled (`job_rescued`) exactly once. Returns how many moved.
        """
        now = now or clock.now()
        running = frozenset({JobState.RUNNING})
        with transaction.atomic(using=self.db):
            orphans = list(
                self.filter(state=JobState.RUNNING, lease_expires_at__lt=now)
                .select_for_update(skip_locked=True)
                .order_by()
            )
            for orphan in orphans:
                if orphan.cancel_requested_at is not None:
                    orphan.state, changes = JobState.CANCELLED, {"finished_at": now}
                elif orphan.attempts < orphan.max_attempts:
                    orphan.state, changes = JobState.PENDING, {"run_at": now, "claimed_by": ""}
                else:
                    orphan.state, changes = JobState.FAILED, {"finished_at": now}
                changes.update(WORKER_LOST_CHANGES)
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
        """
        jobs = list(jobs)
        for job in jobs:
            if type(job) is not self.model or not job._state.adding or job.state != JobState.NEW:
                raise JobStateError(
                    f"bulk_enqueue() takes new, unsaved {self.model.__name__} instances, "
                    f"got {job!r}"
                )
        changes = _enqueue_changes(run_at=run_at, delay=delay, priority=priority, queue=queue)
        for job in jobs:
            for name, value in changes.items():
                setattr(job, name, value)
            job.state = JobState.PENDING
        with transaction.atomic(using=self.db):
            created = backend_for(self.db).insert_jobs(self.model, jobs, batch_size=batch_size)
            wake_workers_on_commit(self.db, {job.queue for job in created})
            for job in created:
                signals.send(signals.job_enqueued, job)
        return created

    def next_run_at(self, queues: Sequence[str] | None = None) -> datetime | None:
        """When the earliest pending row of `queues` (all if None) becomes runnable.

        What an idle worker sleeps until, so a scheduled job starts on time without polling.
        """
        rows = self.pending()
        if queues is not None:
            rows = rows.filter(queue__in=queues)
        return rows.order_by("run_at").values_list("run_at", flat=True).first()

    def prune(self, retention: dict[str, float | None], *, batch: int = 1000) -> int:
        """Delete one batch of finished rows older than `retention` (days, per state).

        One short DELETE by primary key per call, so a big backlog never locks the table for
        long; call again while it returns `batch`. Returns how many rows it deleted.
        """
        now = clock.now()
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
        return self.filter(pk__in=doomed)._raw_delete(self.db)

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
        queue when the caller knows it, so workers of other queues can sleep on.
        """
        check_transition(from_states, to_state)
        moved = self.filter(state__in=from_states).update(state=to_state, **changes)
        if moved and to_state == JobState.PENDING:
            wake_workers_on_commit(self.db, [changes.get("queue", queue_hint)])
        return moved


def check_transition(from_states: frozenset[str], to_state: str) -> None:
    """Refuse a move `ALLOWED_FROM` does not list: the guard every state change passes."""
    if not from_states <= ALLOWED_FROM[to_state]:
        raise JobStateError(f"no transition to {to_state} from {sorted(from_states)}")


class JobBase(ModelBase):
    """Turns `queue = "emails"` on a job model into the default of its `queue` field.

    Plain Django would read a class attribute named like an inherited field as removing
    that field; here it sets the field's default instead, so every row still carries its
    own queue, priority and max_attempts that `enqueue()` can override. It also gives every
    concrete job table its partial index of pending rows.
    """

    def __new__(mcs, name: str, bases: tuple, attrs: dict, **kwargs: Any) -> type:
        defaults = {
            option: attrs.pop(option)
            for option in ROW_OPTIONS
            if option in attrs and not isinstance(attrs[option], models.Field)
        }
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        for option, value in defaults.items():
            field = cls._meta.get_field(option)
            field.default = value
            field.__dict__.pop("_get_default", None)  # Django caches the default getter
        if not cls._meta.abstract and not cls._meta.proxy and not cls._meta.parents:
            indexes = _lifecycle_indexes(cls._meta.db_table, cls._meta.pk.name)
            cls._meta.indexes = [*cls._meta.indexes, *indexes]
            # Migrations read Meta options from original_attrs, so the index must be there too.
            cls._meta.original_attrs["indexes"] = cls._meta.indexes
        return cls


def _lifecycle_indexes(db_table: str, pk_name: str) -> list[models.Index]:
    """Indexes for the claim, the rescue and the pruning, each as narrow as its query.

    The pending and running indexes stay as small as the backlog and the work in flight: a
    table with millions of finished rows still answers "the next runnable jobs of queue q"
    (`_pend`), "... of any queue" (`_any`, for workers serving every queue), "when is the
    next pending row due" (`_due`, what an idle worker sleeps until) and "the running jobs
    whose lease ran out" (`_run`) from a few index pages, each read in its own order rather
    than sorted. Pruning finds the oldest finished rows of a state (`_fin`), and the dashboard
    counts the rows created but never enqueued (`_new`). Every index but the primary key is
    partial, so each version of a row is indexed only where some query will look for it: a
    new row costs two index entries, a pending one four, a running one two. Django caps index
    names at 30 characters, hence the digest.
    """
    prefix = f"{db_table[:16]}_{names_digest(db_table, length=8)}"
    return [
        models.Index(
            fields=["queue", "-priority", "run_at", pk_name],
            condition=models.Q(state=JobState.PENDING),
            name=f"{prefix}_pend",
        ),
        models.Index(
            fields=["lease_expires_at"],
            condition=models.Q(state=JobState.RUNNING),
            name=f"{prefix}_run",
        ),
        models.Index(
            fields=["-priority", "run_at", pk_name],
            condition=models.Q(state=JobState.PENDING),
            name=f"{prefix}_any",
        ),
        models.Index(
            fields=["run_at"], condition=models.Q(state=JobState.PENDING), name=f"{prefix}_due"
        ),
        models.Index(
            fields=["queue"], condition=models.Q(state=JobState.NEW), name=f"{prefix}_new"
        ),
        models.Index(
            fields=["state", "finished_at"],
            condition=models.Q(state__in=FINISHED_STATES),
            name=f"{prefix}_fin",
        ),
    ]


class Job(models.Model, metaclass=JobBase):
    """Base of every job model: subclass it, add domain fields, define `perform()`.

    Subclasses may set `queue`, `priority` and `max_attempts` as class attributes; they
    become the defaults of each new row.
    """

    state = models.CharField(
        max_length=16, choices=JobState.choices, default=JobState.NEW, editable=False
    )
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first (-100 to 100).")
    max_attempts = models.PositiveSmallIntegerField(default=3)
    timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=None,
        help_text="Seconds an attempt may run before it is stopped and counted as failed.",
    )
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    run_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Not to be started before this time."
    )
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(
        max_length=255,
        blank=True,
        editable=False,
        help_text="host:pid of the process that claimed this attempt.",
    )
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="A running job whose worker stops renewing this is rescued after it.",
    )
    error_type = models.CharField(max_length=255, blank=True, editable=False)
    error_message = models.TextField(blank=True, editable=False)
    error_traceback = models.TextField(blank=True, editable=False)

    error_history = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="The last failures, oldest first: attempt, time, worker, error, log.",
    )
    progress_done = models.PositiveIntegerField(null=True, blank=True, editable=False)
    progress_total = models.PositiveIntegerField(null=True, blank=True, editable=False)
    log = models.TextField(
        blank=True, editable=False, help_text="What the latest attempt logged, newest kept."
    )
    cancel_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Someone asked this running job to stop; it stops if it checks.",
    )

    # Per instance, while an attempt runs: its captured log, and when set_progress() last
    # wrote and cancellation_requested() last read the row (monotonic seconds).
    _log: JobLog | None = None
    _progress_written = -math.inf
    _cancel_checked = -math.inf

    # Days to keep finished rows, per state, over JOBS_RETENTION (e.g. {"succeeded": 1}).
    retention: ClassVar[dict[str, float | None]] = {}

    # Which exceptions from perform() are retried (while attempts remain); one matching
    # discard_on fails the job at once (bad input will not get better by retrying).
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    discard_on: ClassVar[tuple[type[BaseException], ...]] = ()

    # Fields whose values are secrets: masked in the admin, and wherever they appear in what
    # an attempt logged or raised (its log, error message and traceback).
    sensitive_fields: ClassVar[tuple[str, ...]] = ()

    # Whether a request may run this job in its own thread when the caller asks for the
    # final answer (`Expect: 200-ok`, see jobs.http). False for work too long or too heavy to
    # hold a web request for: such a request is refused (417) before anything is created.
    runs_inline: ClassVar[bool] = True

    objects = JobQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} #{self.pk}"

    def save(self, **kwargs: Any) -> None:
        """Save domain fields; lifecycle fields change only through the lifecycle verbs.

        A new row is inserted in state `new` (call `enqueue()` to queue it). On an existing
        row, `save()` writes every field except the lifecycle ones, and naming a lifecycle
        field in `update_fields` is an error.
        """
        if self._state.adding:
            if self.state != JobState.NEW:
                raise JobStateError(
                    f"a new {type(self).__name__} row must be created in state 'new', not "
                    f"{self.state!r}: create it, then call enqueue()"
                )
        elif kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in LIFECYCLE_FIELDS
            ]
        elif lifecycle := LIFECYCLE_FIELDS.intersection(kwargs["update_fields"]):
            raise JobStateError(
                f"save() does not write lifecycle fields ({', '.join(sorted(lifecycle))}); "
                "use enqueue(), run(), requeue() or cancel()"
            )
        super().save(**kwargs)

    @classmethod
    def retention_policy(cls) -> dict[str, float | None]:
        """Days to keep finished rows of each state: JOBS_RETENTION, then this model's own."""
        return {**retention_days(), **cls.retention}

    @property
    def label(self) -> str:
        """`app.Model#pk`, how logs name a job."""
        return f"{self._meta.label}#{self.pk}"

    def log_context(self) -> dict[str, Any]:
        """Structured extras for log records about this attempt (`extra=`): what an error
        tracker's logging integration files, groups and filters them by."""
        return {
            "job_model": self._meta.label,
            "job_id": self.pk,
            "job_attempt": self.attempts,
            "job_queue": self.queue,
            "job_worker": self.claimed_by,
        }

    @property
    def logger(self) -> logging.Logger:
        """A logger under `jobs` for `perform()`: its lines are kept on the row."""
        return logging.getLogger(f"jobs.job.{self._meta.label}")

    def set_progress(self, done: int, total: int | None = None) -> None:
        """Report how far `perform()` has got, for the admin's progress bar.

        Cheap to call on every item: the row is written at most once a second (and always
        when `done` reaches `total`), together with the lines logged so far, so both are
        visible while the job runs. Written only while this attempt holds the row.
        """
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise ValueError(f"set_progress() takes a count of 0 or more, got {done!r}")
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise ValueError(f"set_progress() takes a whole-number total, got {total!r}")
        if total is not None and done > total:
            raise ValueError(f"set_progress(): done ({done}) is more than total ({total})")
        self.progress_done, self.progress_total = done, total
        now = time.monotonic()
        if done != total and now - self._progress_written < PROGRESS_WRITE_INTERVAL:
            return
        self._progress_written = now
        fields = {"progress_done": done, "progress_total": total}
        if self._log is not None:
            fields["log"] = self._log.text()
        self._same_row(state=JobState.RUNNING, **self._claim()).update(**fields)

    def cancellation_requested(self) -> bool:
        """Whether someone asked this running job to stop (the admin's cancel, `cancel()`).

        A job that can stop part-way checks it between steps and returns or raises
        `jobs.errors.Cancelled`, which ends the attempt `cancelled`. Reads the row at most
        once a second, so it is cheap to call in a loop.
        """
        if self.cancel_requested_at is None:
            now = time.monotonic()
            if now - self._cancel_checked >= CANCEL_CHECK_INTERVAL:
                self._cancel_checked = now
                self.cancel_requested_at = (
                    self._same_row().values_list("cancel_requested_at", flat=True).first()
                )
        return self.cancel_requested_at is not None

    def mask(self, text: str) -> str:
        """`text` with the values of this job's `sensitive_fields` replaced by a mask."""
        for name in self.sensitive_fields:
            value = getattr(self, name, None)
            if value not in (None, "") and (secret := str(value)) in text:
                text = text.replace(secret, MASK)
        return text

    def _claim(self) -> dict[str, Any]:
        """What identifies this attempt on the row: the guard of every write it makes."""
        return {"attempts": self.attempts, "claimed_by": self.claimed_by}

    def perform(self) -> None:
        """The work. Subclasses define it.

        It runs outside any transaction and may run again after a crash (delivery is
        at least once), so write it to pick up where the row says it is.
        """
        raise NotImplementedError(f"{type(self).__name__} must define perform()")

    def result_url(self) -> str | None:
        """The URL of what this job produced, once it has succeeded; None if nothing.

        The job's status resource (jobs.http) answers a succeeded job with `303 See Other`
        to it, so a client that polled the status ends at the resource it asked for. With
        None, the status itself (state succeeded) is the answer.
        """
        return None

    def status_visible_to(self, request: HttpRequest) -> bool:
        """Whether `request` may read this job's status resource (jobs.http): staff only,
        unless the model says otherwise (e.g. the user its row records as the requester).

        Everyone else gets 404, the answer for a job that does not exist, so ids do not
        leak. It needs Django's authentication middleware (`request.user`).
        """
        return request.user.is_staff

    def snooze(self, delay: timedelta | float) -> NoReturn:
        """Call from `perform()` to stop here and run again after `delay`, without it counting.

        Not a failure and not an attempt: for "the thing I wait for is not ready yet".
        """
        raise Snooze(_start_time(clock.now(), None, delay) - clock.now())

    def retry_delay(self, attempt: int) -> timedelta:
        """How long to wait before retrying after failed attempt number `attempt`.

        Exponential (10 s, 20 s, 40 s, ... capped at an hour) with "equal jitter": a random
        half of the delay, so jobs that failed together do not retry together.
        """
        ceiling = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
        return ceiling / 2 + ceiling / 2 * random.random()

    def enqueue(
        self,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Self:
        """Mark this new row pending, so a worker will run it at `run_at` (default: now).

        Inside `transaction.atomic()` it commits or rolls back with the caller's data: a
        worker never sees a job whose transaction did not commit. An unsaved instance is
        inserted. `priority` and `queue` override the row's values.
        """
        changes = _enqueue_changes(run_at=run_at, delay=delay, priority=priority, queue=queue)
        if self._state.adding:
            for name, value in changes.items():
                setattr(self, name, value)
            self.state = JobState.PENDING
            using = router.db_for_write(type(self), instance=self)
            models.Model.save(self, using=using)
            wake_workers_on_commit(using, [self.queue])
        elif not self._transition_row(frozenset({JobState.NEW}), JobState.PENDING, **changes):
            raise JobStateError(
                f"{self.label} cannot be enqueued: it is {self._current_state()}, and enqueue() "
                "takes a new row (use requeue() for failed or cancelled ones)"
            )
        signals.send(signals.job_enqueued, self)
        return self

    def run(self) -> Self:
        """Perform this job now, in this thread, unless someone else already started it.

        Takes the row lock (`SELECT ... FOR UPDATE`), checks the row is new or pending,
        marks it running and commits before calling `perform()`, so two concurrent calls
        never both perform it: the second raises `JobNotRunnable`. Returns the job with its
        outcome (`succeeded`, `failed`, or `pending` for a retry); an exception raised by
        `perform()` is recorded on the row, not re-raised.
        """
        self._claim_for_run()
        try:
            with LeaseKeeper() as leases:
                leases.hold(self)
                self._execute()
        finally:
            tally.flush(using=self._state.db)
        return self

    def requeue(self) -> Self:
        """Put this failed or cancelled job back in the queue with fresh attempts."""
        return self._apply(JobQuerySet.requeue, "requeued (only failed or cancelled jobs can be)")

    def cancel(self) -> Self:
        """Cancel this job if it has not started, or ask it to stop if it is running.

        A finished job is not touched (JobStateError).
        """
        return self._apply(
            JobQuerySet.cancel, "cancelled (only new, pending or running jobs can be)"
        )

    def _apply(self, verb: Any, refusal: str) -> Self:
        if not verb(self._same_row()):
            raise JobStateError(f"{self.label} is {self._current_state()} and cannot be {refusal}")
        self.refresh_from_db(fields=sorted(LIFECYCLE_FIELDS))
        return self

    def _same_row(self, **guard: Any) -> JobQuerySet:
        using = self._state.db or router.db_for_write(type(self), instance=self)
        return JobQuerySet(model=type(self), using=using).filter(pk=self.pk, **guard)

    def _current_state(self) -> str:
        state = self._same_row().values_list("state", flat=True).first()
        return "deleted" if state is None else state

    def _transition_row(
        self,
        from_states: frozenset[str],
        to_state: str,
        *,
        guard: dict | None = None,
        **changes: Any,
    ) -> bool:
        """Move this row (and this instance) to `to_state` if it is still in `from_states`."""
        check_transition(from_states, to_state)
        using = self._state.db or router.db_for_write(type(self), instance=self)
        wake = changes.get("queue", self.queue) if to_state == JobState.PENDING else None
        moved = backend_for(using).move_row(
            self, from_states, to_state, guard=guard or {}, changes=changes, wake=wake
        )
        if moved:
            self.state = to_state
            for name, value in changes.items():
                setattr(self, name, value)
        return bool(moved)

    def _renew_lease(self, until: datetime) -> bool:
        """Extend this attempt's lease; False if the row was taken from this attempt.

        An attempt that has just recorded its own outcome has nothing to renew, and has not
        lost anything.
        """
        renewed = self._same_row(state=JobState.RUNNING, **self._claim()).update(
            lease_expires_at=until
        )
        return bool(renewed) or self.state != JobState.RUNNING

    def _claim_for_run(self) -> None:
        rows = self._same_row().select_for_update()
        with transaction.atomic(using=rows.db):
            current = rows.values("state", "attempts", "requested_at").first()
            if current is None:
                raise JobNotRunnable(f"{self.label} does not exist (deleted?)")
            if current["state"] not in RUNNABLE_STATES:
                raise JobNotRunnable(f"{self.label} is {current['state']}, not new or pending")
            now = clock.now()
            self._transition_row(
                RUNNABLE_STATES,
                JobState.RUNNING,
                attempts=current["attempts"] + 1,
                requested_at=current["requested_at"] or now,
                started_at=now,
                finished_at=None,
                claimed_by=process_identity(),
                lease_expires_at=now + lease_duration(),
                **FRESH_ATTEMPT,
            )

    def _execute(self) -> None:
        """Perform an attempt this process has claimed, and record how it ended.

        The outcome is written only if the row is still this attempt's (same attempt number
        and claimant): a worker that lost its claim cannot overwrite a newer attempt. A
        `SystemExit` or `KeyboardInterrupt` from `perform()` is recorded as a failure like
        any other (so a job that exits every time still runs out of attempts), then raised
        again for the caller. What the attempt logs is kept on the row with its outcome.
        """
        with capturing(self.mask) as self._log:
            logger.info(
                "%s started (queue %s, attempt %d of %d)",
                self.label,
                self.queue,
                self.attempts,
                self.max_attempts,
            )
            signals.send(signals.job_started, self)
            began = time.monotonic()
            try:
                self.perform()
            except Snooze as snooze:
                self._record(self._snooze_outcome(snooze), began)
            except Cancelled:
                self._record((JobState.CANCELLED, {"finished_at": clock.now()}), began)
            except BaseException as exc:
                self._record(self._failure_outcome(exc, traceback.format_exc()), began, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                self._record((JobState.SUCCEEDED, {"finished_at": clock.now()}), began)

    def _time_out(self, began: float, stack: str) -> None:
        """Record that this attempt overran its timeout; `stack` shows where it was stuck."""
        exc = JobTimeout(f"{self.label} ran longer than its timeout of {self.timeout} s")
        self._record(
            self._failure_outcome(exc, f"Stack of the job at its timeout:\n{stack}"), began, exc
        )

    def _hand_back(self) -> bool:
        """Return an attempt this worker cannot finish (shutdown) to the queue, uncounted.

        A job someone asked to stop is not worth handing back: it ends cancelled.
        """
        running = frozenset({JobState.RUNNING})
        if (
            self._same_row(**self._claim())
            .exclude(cancel_requested_at=None)
            ._transition(
                running, JobState.CANCELLED, finished_at=clock.now(), lease_expires_at=None
            )
        ):
            logger.warning("%s cancelled on shutdown, as asked", self.label)
            return True
        handed_back = self._transition_row(
            running,
            JobState.PENDING,
            guard=self._claim(),
            attempts=self.attempts - 1,
            run_at=clock.now(),
            claimed_by="",
            lease_expires_at=None,
        )
        if handed_back:
            logger.warning("%s handed back to the queue unfinished", self.label)
        return handed_back

    def _record(
        self,
        outcome: tuple[str, dict[str, Any]],
        began: float,
        exc: BaseException | None = None,
    ) -> None:
        """Write how the attempt ended (if the row is still this attempt's), then say so in
        the log and through the lifecycle signals. `exc` is what failed it, if anything."""
        to_state, changes = outcome
        took = time.monotonic() - began
        if self._log is not None:
            changes = {**changes, "log": self._log.text()}
        if not self._transition_row(
            frozenset({JobState.RUNNING}), to_state, guard=self._claim(), **changes
        ):
            logger.warning(
                "%s attempt %d ended after %.3fs but the row moved on (now %s); "
                "outcome not recorded",
                self.label,
                self.attempts,
                took,
                self._current_state(),
            )
        elif to_state == JobState.SUCCEEDED:
            logger.info("%s succeeded in %.3fs", self.label, took)
            signals.send(signals.job_succeeded, self, duration=took)
        elif to_state == JobState.CANCELLED:
            logger.info("%s stopped after %.3fs: cancelled, as asked", self.label, took)
        elif exc is not None:
            self._report_failure(exc, took)
        else:
            logger.info("%s snoozed until %s", self.label, f"{self.run_at:%Y-%m-%d %H:%M:%S}")

    def _report_failure(self, exc: BaseException, took: float) -> None:
        """A retry is a warning; a job failed for good is an error, with its exception
        attached, so an error tracker's logging integration files it with no glue."""
        extra = {**self.log_context(), "job_error_type": self.error_type}
        if self.state == JobState.PENDING:
            logger.warning(
                "%s failed in %.3fs: %s: %s; retry at %s",
                self.label,
                took,
                self.error_type,
                self.error_message,
                f"{self.run_at:%Y-%m-%d %H:%M:%S}",
                extra=extra,
            )
            signals.send(signals.job_retried, self, duration=took, exception=exc)
        else:
            logger.error(
                "%s failed in %.3fs after %d attempt(s): %s: %s",
                self.label,
                took,
                self.attempts,
                self.error_type,
                self.error_message,
                exc_info=exc,
                extra=extra,
            )
            signals.send(signals.job_failed, self, duration=took, exception=exc)

    def _snooze_outcome(self, snooze: Snooze) -> tuple[str, dict[str, Any]]:
        """Back to pending after the delay; the attempt is given back, no error recorded."""
        return JobState.PENDING, {
            "attempts": self.attempts - 1,
            "run_at": clock.now() + snooze.delay,
            "claimed_by": "",
            "lease_expires_at": None,
        }

    def _failure_outcome(
        self, exc: BaseException, formatted_traceback: str
    ) -> tuple[str, dict[str, Any]]:
        """Retry later or fail for good, with the error kept on the row and in its history."""
        now = clock.now()
        formatted_traceback = self.mask(formatted_traceback)
        error = {
            "error_type": _qualified_name(type(exc)),
            "error_message": _bounded(self.mask(str(exc)), ERROR_MESSAGE_LIMIT),
            "error_traceback": _bounded(formatted_traceback, TRACEBACK_LIMIT, keep_end=True),
        }
        entry = {
            "attempt": self.attempts,
            "at": now.isoformat(),
            "worker": self.claimed_by,
            "type": error["error_type"],
            "message": error["error_message"],
            "traceback": _bounded(formatted_traceback, HISTORY_TRACEBACK_LIMIT, keep_end=True),
            "log": _bounded(self._log.text(), HISTORY_LOG_LIMIT, keep_end=True)
            if self._log is not None
            else "",
        }
        changes = {**error, "error_history": [*self.error_history, entry][-ERROR_HISTORY_LIMIT:]}
        if self.attempts < self.max_attempts and self._retries_after(exc):
            return JobState.PENDING, {**changes, "run_at": now + self.retry_delay(self.attempts)}
        return JobState.FAILED, {**changes, "finished_at": now}

    def _retries_after(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.discard_on)


def _enqueue_changes(
    *,
    run_at: datetime | None,
    delay: timedelta | float | None,
    priority: int | None,
    queue: str | None,
) -> dict[str, Any]:
    """The fields `enqueue()` and `bulk_enqueue()` set, with their arguments validated."""
    now = clock.now()
    changes: dict[str, Any] = {"requested_at": now, "run_at": _start_time(now, run_at, delay)}
    if priority is not None:
        changes["priority"] = validate_priority(priority)
    if queue is not None:
        changes["queue"] = validate_queue_name(queue)
    return changes


def _start_time(
    now: datetime, run_at: datetime | None, delay: timedelta | float | None
) -> datetime:
    if run_at is not None and delay is not None:
        raise ValueError("pass run_at or delay to enqueue(), not both")
    if run_at is not None:
        if not isinstance(run_at, datetime) or run_at.tzinfo is None:
            raise ValueError(f"run_at must be a timezone-aware datetime, got {run_at!r}")
        return run_at
    if delay is None:
        return now
    if isinstance(delay, bool) or not isinstance(delay, timedelta | int | float):
        raise ValueError(f"delay must be a timedelta or a number of seconds, got {delay!r}")
    if not isinstance(delay, timedelta):
        delay = timedelta(seconds=delay)
    if delay < timedelta(0):
        raise ValueError(f"delay must not be negative, got {delay}")
    return now + delay


def _qualified_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Cut long text to `limit` characters, saying how much was cut.

    A message is best read from its start; a traceback from its end, where the frame that
    raised is.
    """
    if len(text) <= limit:
        return text
    marker = f"[{len(text) - limit} characters cut]"
    kept = limit - len(marker) - 1
    return f"{marker}\n{text[-kept:]}" if keep_end else f"{text[:kept]}\n{marker}"


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

    class Meta:
        ordering = ("-started_at",)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def register(
        cls, name: str, *, queues: Sequence[str] | None, threads: int, supervisor: str | None
    ) -> None:
        """Create or take over this process's row, `name` (`host:pid`; pids get reused)."""
        now = clock.now()
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
            },
        )

    @classmethod
    def mark_stopped(cls, name: str, **final: Any) -> None:
        """Say process `name` has stopped (on its way out), with its final counts."""
        try:
            cls.objects.filter(name=name).update(
                state=cls.State.STOPPED, stopped_at=clock.now(), jobs_in_flight=[], **final
            )
        except CONNECTION_ERRORS as exc:
            logger.warning("could not mark worker %s stopped: %s", name, exc)


class ScheduledRun(models.Model):
    """One slot of one schedule that the clock enqueued.

    The unique constraint on (schedule, slot) is what makes each slot run once however many
    workers run the clock: each tries to insert the slot's row in the transaction that
    enqueues its job, and every one but the first fails on the constraint and rolls back.
    A lock would die with its holder; a constraint does not.
    """

    schedule = models.CharField(max_length=200)
    slot = models.DateTimeField(help_text="The time the schedule named.")
    enqueued_at = models.DateTimeField()
    late = models.BooleanField(
        default=False, help_text="Enqueued on catching up after the clock was down."
    )
    job_model = models.CharField(max_length=200)
    job_pk = models.CharField(max_length=64)

    class Meta:
        ordering = ("schedule", "-slot")
        constraints = (
            models.UniqueConstraint(fields=["schedule", "slot"], name="jobs_scheduledrun_once"),
        )

    def __str__(self) -> str:
        return f"{self.schedule} at {self.slot:%Y-%m-%d %H:%M:%S}"


class Heartbeat(Job):
    """A no-op the clock enqueues every minute on each queue with `heartbeat: True` in
    `JOBS_QUEUES`: how long it waited for a worker is the queue's live latency, measured
    the same way whether the queue is busy or idle."""

    retention: ClassVar[dict[str, float | None]] = {"succeeded": 1, "failed": 1, "cancelled": 1}
    max_attempts = 1

    def perform(self) -> None:
        """Nothing: the measurement is `started_at - run_at`, written by the claim."""


class MetricTally(models.Model):
    """A running total behind one Prometheus counter or histogram series (`jobs.tally`).

    Every process that runs jobs adds what it counted since its last flush to these rows
    (`value = value + n`), so the totals are right however many processes on however many
    hosts did the counting. Rows are never deleted: a counter must never go down.
    """

    name = models.CharField(max_length=100, help_text="The series, e.g. jobs_failed_total.")
    queue = models.CharField(max_length=100)
    model = models.CharField(max_length=200, help_text="The job model, app_label.ModelName.")
    bucket = models.CharField(
        max_length=20,
        blank=True,
        help_text="A histogram bucket's upper bound (observations in it alone, not cumulative).",
    )
    value = models.FloatField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["name", "queue", "model", "bucket"], name="jobs_metrictally_series"
            ),
        )

    def __str__(self) -> str:
        return f"{self.name}{{queue={self.queue}, model={self.model}, bucket={self.bucket}}}"


class TaskJob(Job):
    """A call of a function decorated with Django's `@task`, enqueued through
    `jobs.backends.tasks.DatabaseBackend`: the function's path and JSON arguments, and once
    it has run, its JSON return value. Runs with the same guarantees as any job model.

    One attempt by default, as the Tasks API promises nothing about retries; a task that
    should be retried can be enqueued again, or written as a job model of its own.
    """

    task_path = models.CharField(
        max_length=300, editable=False, help_text="module.function of the @task."
    )
    args = models.JSONField(default=list, blank=True, editable=False)
    kwargs = models.JSONField(default=dict, blank=True, editable=False)
    backend = models.CharField(
        max_length=100, default="default", editable=False, help_text="The TASKS alias."
    )
    return_value = models.JSONField(null=True, blank=True, editable=False)

    max_attempts = 1

    class Meta:
        verbose_name = "task"

    def __str__(self) -> str:
        return f"task {self.task_path} #{self.pk}"

    def perform(self) -> None:
        """Call the registered task (never anything the row merely names) and keep what it
        returned, written only while this attempt still holds the row."""
        from jobs.backends.tasks import perform_task  # the Tasks API is an optional extra

        self.return_value = perform_task(self)
        self._same_row(state=JobState.RUNNING, **self._claim()).update(
            return_value=self.return_value
        )
