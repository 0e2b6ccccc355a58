"""The abstract `Job` model: the lifecycle every domain job shares, and its verbs.

A job is a row of its own table, so enqueueing is a write in the application's database: it
commits or rolls back with the data it belongs to. A row changes state only through the
verbs (`enqueue()`, `run()`, `requeue()`, `cancel()`, the queryset's), each a guarded write
(`_transition_row`, `JobQuerySet._transition`); how one attempt runs and is recorded is
`jobs.execution`'s.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar, NoReturn, Self

from django.contrib.auth import get_permission_codename
from django.db import models, router
from django.http import HttpRequest

from jobs import backoff, execution, signals, timesource
from jobs.conf import retention_days
from jobs.db import engine_for
from jobs.db.wakeup import hint_for, payload
from jobs.errors import JobStateError, Snooze
from jobs.joblog import JobLog
from jobs.models import batch as batches
from jobs.models import dependency
from jobs.models.enqueueing import enqueue_changes, enqueue_row, start_time
from jobs.models.options import JobBase
from jobs.models.queryset import JobQuerySet
from jobs.models.unique import key_of, refusing_duplicates
from jobs.states import JobState, check_transition
from jobs.tracing import TRACEPARENT_LENGTH

# Fields only the lifecycle verbs write. `save()` never touches them, so a stale instance
# (an admin form, a shell session, `perform()` saving its own domain fields) cannot undo a
# state change another process made in the meantime.
LIFECYCLE_FIELDS = frozenset(
    {
        *("state", "requested_at", "run_at", "started_at", "finished_at", "attempts"),
        *("claimed_by", "lease_expires_at", "cancel_requested_at", "traceparent"),
        *("error_type", "error_message", "error_traceback", "error_history", "log"),
        *("progress_done", "progress_total", "has_dependents", "stack", "stack_at"),
        *("kill_requested_at", "memory_growth_kb"),
    }
)
RETRY_BASE_DELAY = timedelta(seconds=10)
RETRY_MAX_DELAY = timedelta(hours=1)
# set_progress() writes at most this often, however often a job calls it.
PROGRESS_WRITE_INTERVAL = 1.0
# cancellation_requested() reads the row at most this often.
CANCEL_CHECK_INTERVAL = 1.0
MASK = "********"


class Job(models.Model, metaclass=JobBase):
    """Base of every job model: subclass it, add domain fields, define `perform()`.

    Subclasses may set `queue`, `priority` and `max_attempts` as class attributes; they
    become the defaults of each new row. `unique_on = ("account", "report")` allows at most
    one active (pending or running) row per value of those fields (`jobs.models.unique`);
    `concurrency_key`, `concurrency_limit` and `rate_limit` bound how many rows per key run at
    once and start per period (`jobs.db.limits`).
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
    traceparent = models.CharField(
        max_length=TRACEPARENT_LENGTH,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="The trace the job was enqueued from (W3C traceparent), if it was traced.",
    )
    cancel_requested_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Someone asked this running job to stop; it stops if it checks.",
    )
    stack = models.TextField(
        blank=True, default="", db_default="", editable=False, help_text="Where it was then."
    )
    stack_at = models.DateTimeField(null=True, blank=True, editable=False)
    kill_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    memory_growth_kb = models.IntegerField(null=True, blank=True, editable=False)
    has_dependents = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Other jobs wait on this one's ending (enqueue(after=...), a batch).",
    )

    # Per instance, while an attempt runs: its captured log, when set_progress() last wrote
    # and cancellation_requested() last read the row (monotonic seconds), and whether the
    # worker has lost its claim on the row (`lose_claim()`).
    _log: JobLog | None = None
    _progress_written = -math.inf
    _cancel_checked = -math.inf
    _claim_lost = False
    _shutdown_requested = False  # set by the worker (`request_shutdown`)
    _thread_id: int | None = None  # the thread performing it, for its stack (`joblog.stack_of`)

    # Days to keep finished rows, per state, over JOBS_RETENTION (e.g. {"succeeded": 1}).
    retention: ClassVar[dict[str, float | None]] = {}

    # Which exceptions from perform() are retried (while attempts remain); one matching
    # discard_on fails the job at once (bad input will not get better by retrying).
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (Exception,)
    discard_on: ClassVar[tuple[type[BaseException], ...]] = ()

    # Fields whose values are secrets: masked in the admin, and wherever they appear in what
    # an attempt logged or raised (its log, error message and traceback).
    sensitive_fields: ClassVar[tuple[str, ...]] = ()

    # The framework's own job models (latency probes, tasks) say so: `runjobs` asks for at least
    # one job model of the project's, and the admin never offers to add framework rows.
    framework: ClassVar[bool] = False

    # Whether a request asking for the final answer (`Expect: 200-ok`, jobs.views.status) may run
    # this job in its own thread; if False, such a request is refused (417), nothing created.
    runs_inline: ClassVar[bool] = True

    # Fields perform() sets that a success writes on the row, in its outcome's fenced UPDATE.
    success_fields: ClassVar[tuple[str, ...]] = ()

    # Fields whose values may have at most one active (pending or running) row at a time: a
    # partial unique constraint in the model's migration. Enqueueing a duplicate raises
    # DuplicateJob; `objects.get_or_enqueue()` returns the active job instead.
    unique_on: ClassVar[tuple[str, ...] | None] = None
    # Rows with the same value of this field (None: every row of the model) run at most
    # `concurrency_limit` at a time and start at most `rate_limit[0]` times per
    # `rate_limit[1]`, across every worker and host (`jobs.db.limits`). A row over a limit
    # stays pending in its place, with no attempt counted.
    concurrency_key: ClassVar[str | None] = None
    concurrency_limit: ClassVar[int | None] = None
    rate_limit: ClassVar[tuple[int, timedelta] | None] = None

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
    def in_use(cls) -> bool:
        """Whether workers should claim from this table. Always, for a project's job model; a
        framework model whose feature is not configured says no, so idle workers do not ask
        an always-empty table on every claim."""
        return True

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
        """Whether this running attempt should stop: someone asked it to (the admin's cancel,
        `cancel()`), or its worker no longer holds the row (`lose_claim()`).

        A job that can stop part-way checks it between steps and returns or raises
        `jobs.errors.Cancelled`, which ends the attempt `cancelled`. Reads the row at most
        once a second, so it is cheap to call in a loop.
        """
        if self._claim_lost:
            return True
        if self.cancel_requested_at is None:
            now = time.monotonic()
            if now - self._cancel_checked >= CANCEL_CHECK_INTERVAL:
                self._cancel_checked = now
                self.cancel_requested_at = (
                    self._same_row().values_list("cancel_requested_at", flat=True).first()
                )
        return self.cancel_requested_at is not None

    def shutdown_requested(self) -> bool:
        """Whether the worker running this attempt is shutting down (SIGTERM, a deploy): it
        waits out its grace period for the job, then hands it back. A job that can resume
        later (`jobs.models.IterativeJob`, or one that snoozes) stops at the next safe point
        instead of making the worker wait. No query: the worker sets it."""
        return self._shutdown_requested

    def request_shutdown(self) -> None:
        """Say this attempt's worker is shutting down (`shutdown_requested()`). Any thread."""
        self._shutdown_requested = True

    def lose_claim(self) -> None:
        """Say this attempt no longer holds its row: its lease ran out (another attempt may
        be running), or its worker handed it back on shutdown. Its outcome cannot be written
        any more, and `cancellation_requested()` turns true, so a job that checks it stops
        rather than run beside the next attempt. Any thread may call it."""
        self._claim_lost = True

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

        The job's status resource (jobs.views.status) answers a succeeded job with `303 See Other`
        to it, so a client that polled the status ends at the resource it asked for. With
        None, the status itself (state succeeded) is the answer.
        """
        return None

    def status_visible_to(self, request: HttpRequest) -> bool:
        """Whether `request` may read this job's status resource (jobs.views.status): by
        default whoever may see this model's rows in the admin (active staff with its view or
        change permission), as the dashboard decides; a model may say otherwise (e.g. the
        user its row records as the requester). Being staff is not enough: a job's error
        message may hold what only its model's readers should see.

        Everyone else gets 404, the answer for a job that does not exist, so ids do not
        leak. It needs Django's authentication middleware (`request.user`).
        """
        user, opts = request.user, self._meta
        return (
            user.is_active
            and user.is_staff
            and any(
                user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
                for action in ("view", "change")
            )
        )

    def snooze(self, delay: timedelta | float) -> NoReturn:
        """Call from `perform()` to stop here and run again after `delay`, without it counting.

        Not a failure and not an attempt: for "the thing I wait for is not ready yet".
        """
        raise Snooze(start_time(timesource.now(), None, delay) - timesource.now())

    def retry_delay(self, attempt: int) -> timedelta:
        """How long to wait before retrying after failed attempt number `attempt`.

        Exponential (10 s, 20 s, 40 s, ... capped at an hour) with equal jitter
        (`jobs.backoff`), so jobs that failed together do not retry together.
        """
        seconds = backoff.delay(
            attempt,
            first=RETRY_BASE_DELAY.total_seconds(),
            cap=RETRY_MAX_DELAY.total_seconds(),
            jitter=True,
        )
        return timedelta(seconds=seconds)

    def enqueue(
        self,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        priority: int | None = None,
        queue: str | None = None,
        after: Sequence[Job] = (),
    ) -> Self:
        """Mark this new row pending, so a worker will run it at `run_at` (default: now).

        Inside `transaction.atomic()` it commits or rolls back with the caller's data: a
        worker never sees a job whose transaction did not commit. An unsaved instance is
        inserted. `priority` and `queue` override the row's values.

        With `after=[jobs]` (of any job models, already saved) it runs once every one of them
        has succeeded: until then it is `waiting`, which no worker claims; if one fails for
        good or is cancelled, this job ends cancelled, naming it (`jobs.models.dependency`).
        Inside a `jobs.batch()` block it joins the batch.

        With `unique_on`, a job whose key already has an active one raises `DuplicateJob`
        naming it; the refused write is undone in a savepoint of its own (the caller's
        transaction carries on), and the row stays `new` (an unsaved instance stays unsaved).
        """
        using = self._state.db or router.db_for_write(type(self), instance=self)
        changes = enqueue_changes(
            run_at=run_at, delay=delay, priority=priority, queue=queue, using=using
        )
        enqueue_row(self, using, changes, after=list(after))
        signals.send(signals.job_enqueued, self)
        return self

    def _enqueue_waiting(self, using: str) -> None:
        """Write this new job waiting, for something else to release: a batch's `on_finish`."""
        changes = enqueue_changes(run_at=None, delay=None, priority=None, queue=None, using=using)
        enqueue_row(self, using, changes, waiting=True)

    @classmethod
    def _ended(cls, using: str, state: str, pks: Iterable[Any]) -> None:
        """Rows others wait on just ended in `state`, in this transaction (for `execution`)."""
        dependency.ended(cls, using, state, pks)

    def run(self) -> Self:
        """Perform this job now, in this thread, unless someone else already started it.

        Takes the row lock (`SELECT ... FOR UPDATE`), checks the row is new or pending,
        marks it running and commits before calling `perform()`, so two concurrent calls
        never both perform it: the second raises `JobNotRunnable`. Returns the job with its
        outcome (`succeeded`, `failed`, or `pending` for a retry); an exception raised by
        `perform()` is recorded on the row, not re-raised.

        A new row with `unique_on` whose key already has an active job raises `DuplicateJob`
        naming it, as `enqueue()` does, and stays new.
        """
        using = self._state.db or router.db_for_write(type(self), instance=self)
        refusing_duplicates(
            type(self), using, partial(execution.claim_for_run, self), lambda: [key_of(self)]
        )
        with batches.outside():  # what perform() enqueues does not join the caller's batch
            execution.perform_claimed(self)
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
        return type(self)._rows(using).filter(pk=self.pk, **guard)

    @classmethod
    def _rows(cls, using: str) -> JobQuerySet:
        """Every row of this model in `using`, with the verbs, whatever `objects` filters."""
        return JobQuerySet(model=cls, using=using)

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
        wake = None
        if to_state == JobState.PENDING:
            wake = payload(hint_for(changes.get("queue", self.queue), type(self)))
        moved = engine_for(using).move_row(
            self, from_states, to_state, guard=guard or {}, changes=changes, wake=wake
        )
        if moved:
            self.state = to_state
            for name, value in changes.items():
                setattr(self, name, value)
        return bool(moved)
