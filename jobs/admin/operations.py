"""What an operator does to jobs from the admin, each change recorded in Django's admin log.

Every operation goes through a lifecycle verb (`enqueue()`, `requeue()`, `cancel()`,
`retry_now()`, `run()`), so the admin can do nothing the shell could not, and nothing
`ALLOWED_FROM` forbids. The selected rows are locked for the length of the operation, so the
audit entry written for each row says exactly what changed it from what: "Requeue: failed →
pending".

What an operator is offered depends on more than the row's state: a pending job due later is
*scheduled* (only it can be retried now), and a running job asked to stop has *stop
requested* (asking again does nothing). `shown_state()` tells them apart; the state column
still says pending and running.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import QuerySet

from jobs.errors import DuplicateJob, JobNotRunnable, JobStateError
from jobs.models import Job, JobQuerySet
from jobs.states import RUNNABLE_STATES, JobState

# The columns an operation may change; a row whose values differ afterwards was changed.
WATCHED = ("state", "run_at", "cancel_requested_at", "queue", "priority", "kill_requested_at")
# Jobs one "run now" may perform inside a web request: it is for debugging, not draining.
RUN_NOW_LIMIT = 10
# What `shown_state()` calls a pending job due later, and a running job asked to stop.
SCHEDULED = "scheduled"
STOP_REQUESTED = "stop requested"


@dataclass(frozen=True)
class Operation:
    """One thing an operator can do to a selection of jobs."""

    title: str  # "Requeue": the first word of the audit entry
    done: str  # "requeued": how the admin reports it
    applies_to: str  # "failed or cancelled": what it says of the rows it skipped
    apply: Callable[[QuerySet], object]
    # Lock the rows while applying, so the audit is exact. Not for running jobs inline: a
    # job's lease keeper renews its lease from another connection and would wait on the lock.
    locks: bool = True
    effect: str = ""  # what it does to each job it applies to, for a page that asks first

    def __call__(self, user, rows: QuerySet) -> list[tuple[str, str]]:
        """Apply to `rows` on behalf of `user`; returns (from, to) for each changed row."""
        selected = rows.model._default_manager.db_manager(rows.db).filter(
            pk__in=list(rows.values_list("pk", flat=True))
        )
        with transaction.atomic(using=rows.db) if self.locks else contextlib.nullcontext():
            locked = selected.select_for_update() if self.locks else selected
            before = {pk: values for pk, *values in locked.values_list("pk", *WATCHED)}
            self.apply(selected)
            after = {pk: values for pk, *values in selected.values_list("pk", *WATCHED)}
            moves: dict[tuple[str, str], list] = defaultdict(list)
            for pk, values in before.items():
                if pk in after and after[pk] != values:
                    moves[describe(values, after[pk])].append(pk)
            for (old, new), pks in moves.items():
                LogEntry.objects.log_actions(
                    user.pk, selected.filter(pk__in=pks), CHANGE, f"{self.title}: {old} → {new}"
                )
        return [move for move, pks in moves.items() for _ in pks]


def describe(before: list, after: list) -> tuple[str, str]:
    """(from, to) in an operator's words, from the WATCHED values before and after."""
    old_state, new_state = before[0], after[0]
    if before[5] != after[5]:
        return old_state, "kill requested"
    if before[3:5] != after[3:5]:  # a move: where it waits, not what state it is in
        return _place(*before[3:5]), _place(*after[3:5])
    if old_state == new_state == JobState.RUNNING:
        return old_state, "asked to stop"
    if old_state == new_state == JobState.PENDING:
        return SCHEDULED, "runnable now"
    return old_state, new_state


def _place(queue: str, priority: int) -> str:
    return f"queue {queue}, priority {priority}"


def moving(queue: str | None, priority: int | None) -> Operation:
    """The operation that moves jobs to `queue` and/or `priority` (`JobQuerySet.move()`):
    made per request, as its target is the operator's."""
    return Operation(
        "Move",
        "moved",
        "pending or waiting",
        lambda rows: rows.move(queue=queue, priority=priority),
        effect="Each keeps its place (when it is due, its attempts) in its new queue.",
    )


def shown_state(job: Job, now: datetime) -> str:
    """The job's state as an operator needs to see it: `SCHEDULED` for a pending job whose
    `run_at` is still to come (what `retry_now()` moves), `STOP_REQUESTED` for a running job
    someone cancelled (it stops if and when it checks), otherwise `job.state`.

    For display and for choosing what to offer only: the row's state is pending or running.
    """
    if job.state == JobState.PENDING and job.run_at is not None and job.run_at > now:
        return SCHEDULED
    if job.state == JobState.RUNNING and job.cancel_requested_at is not None:
        return STOP_REQUESTED
    return job.state


def offered(job: Job, now: datetime) -> tuple[str, ...]:
    """The names of the operations that apply to `job` as it is at `now`: its page's buttons."""
    return OFFERED[shown_state(job, now)]


def _enqueue(rows: QuerySet) -> None:
    """Queue each new row as `enqueue()` does: pending now, in its own queue and priority.

    A row whose `unique_on` key already has an active job stays new (reported as skipped)."""
    for job in rows.filter(state=JobState.NEW).order_by("pk"):
        try:
            job.enqueue()
        except DuplicateJob:
            continue
        except JobStateError:
            continue  # it left `new` since it was read (on SQLite rows are not locked)


def _requeue(rows: JobQuerySet) -> None:
    """`requeue()`, leaving a row whose `unique_on` key already has an active job as it is."""
    rows.requeue(skip_duplicates=True)


def _run_now(rows: QuerySet) -> None:
    """Perform each new or pending job here and now, as `run()` does; for debugging."""
    for job in rows.filter(state__in=RUNNABLE_STATES).order_by("pk")[:RUN_NOW_LIMIT]:
        try:
            job.run()
        except JobNotRunnable:
            continue  # a worker took it first: nothing to run twice


OPERATIONS = {
    "enqueue": Operation("Enqueue", "enqueued", "new", _enqueue),
    "requeue": Operation(
        "Requeue",
        "requeued",
        "failed or cancelled",
        _requeue,
        effect="Each goes back to pending, due now, with its attempts reset.",
    ),
    "cancel": Operation(
        "Cancel",
        "cancelled",
        "new, pending or running",
        JobQuerySet.cancel,
        effect="A new or pending job is cancelled at once; a running one is asked to stop, "
        "and stops when it next checks for a cancel request, or when it finishes.",
    ),
    "retry_now": Operation(
        "Retry now", "moved to now", "scheduled (pending, due later)", JobQuerySet.retry_now
    ),
    "kill": Operation(
        "Kill",
        "asked to be killed",
        "running",
        JobQuerySet.kill,
        effect="For a job that ignores Cancel. Its worker records the attempt as failed for "
        "good (with the job's stack at that moment) and restarts its process, which stops "
        "every other job that process was running (they are handed back or rescued). On "
        "PostgreSQL at once, elsewhere within seconds.",
    ),
    "run_now": Operation(
        "Run now", "run", f"new or pending (at most {RUN_NOW_LIMIT} at once)", _run_now, False
    ),
}

# Which operations make sense for a job as `shown_state()` sees it: the buttons on its page.
OFFERED = {
    JobState.NEW: ("enqueue", "run_now", "cancel"),
    JobState.WAITING: ("cancel",),  # it runs when the jobs it waits on have succeeded
    JobState.PENDING: ("run_now", "cancel"),
    SCHEDULED: ("retry_now", "run_now", "cancel"),
    JobState.RUNNING: ("cancel", "kill"),
    STOP_REQUESTED: ("kill",),
    JobState.FAILED: ("requeue",),
    JobState.CANCELLED: ("requeue",),
    JobState.SUCCEEDED: (),
}
