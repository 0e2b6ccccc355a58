"""What an operator does to jobs from the admin, each change recorded in Django's admin log.

Every operation goes through a lifecycle verb (`requeue()`, `cancel()`, `retry_now()`,
`run()`), so the admin can do nothing the shell could not, and nothing `ALLOWED_FROM`
forbids. The selected rows are locked for the length of the operation, so the audit entry
written for each row says exactly what changed it from what: "Requeue: failed → pending".
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.db.models import QuerySet

from jobs.errors import JobNotRunnable
from jobs.models import JobQuerySet
from jobs.states import RUNNABLE_STATES, JobState

# The columns an operation may change; a row whose values differ afterwards was changed.
WATCHED = ("state", "run_at", "cancel_requested_at")
# Jobs one "run now" may perform inside a web request: it is for debugging, not draining.
RUN_NOW_LIMIT = 10


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
    if old_state == new_state == JobState.RUNNING:
        return old_state, "asked to stop"
    if old_state == new_state == JobState.PENDING:
        return "scheduled", "runnable now"
    return old_state, new_state


def _run_now(rows: QuerySet) -> None:
    """Perform each new or pending job here and now, as `run()` does; for debugging."""
    for job in rows.filter(state__in=RUNNABLE_STATES).order_by("pk")[:RUN_NOW_LIMIT]:
        try:
            job.run()
        except JobNotRunnable:
            continue  # a worker took it first: nothing to run twice


OPERATIONS = {
    "requeue": Operation("Requeue", "requeued", "failed or cancelled", JobQuerySet.requeue),
    "cancel": Operation("Cancel", "cancelled", "new, pending or running", JobQuerySet.cancel),
    "retry_now": Operation(
        "Retry now", "moved to now", "scheduled (pending, due later)", JobQuerySet.retry_now
    ),
    "run_now": Operation(
        "Run now", "run", f"new or pending (at most {RUN_NOW_LIMIT} at once)", _run_now, False
    ),
}

# Which operations make sense for a job in each state: the buttons on its admin page.
OFFERED = {
    JobState.NEW: ("run_now", "cancel"),
    JobState.PENDING: ("retry_now", "run_now", "cancel"),
    JobState.RUNNING: ("cancel",),
    JobState.FAILED: ("requeue",),
    JobState.CANCELLED: ("requeue",),
    JobState.SUCCEEDED: (),
}
