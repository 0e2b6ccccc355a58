"""How a job becomes queued: the fields every enqueue sets, and the write of one row.

`Job.enqueue()` and `JobQuerySet.enqueue()` write one row through `enqueue_row`. A job
enqueued with `after=[...]` locks its parents first and is written waiting, pending or
cancelled as their states say (`jobs.models.dependency`); one enqueued inside a `batch()`
block is written with `has_dependents` set and joins the batch (`jobs.models.batch`), all in
one transaction. A job with neither pays for neither: its write is what it always was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models, transaction

from jobs import timesource
from jobs.db.wakeup import hint_for, wake_workers_on_commit
from jobs.errors import JobStateError
from jobs.models import batch as batches
from jobs.models.dependency import link, wait_on
from jobs.models.unique import key_columns, key_of, refusing_duplicates
from jobs.states import JobState
from jobs.tracing import current_traceparent
from jobs.validation import validate_priority, validate_queue_name

if TYPE_CHECKING:
    from jobs.models.job import Job

NEW = frozenset({JobState.NEW})


def enqueue_row(
    job: Job,
    using: str,
    changes: dict[str, Any],
    *,
    after: Sequence[Job] = (),
    waiting: bool = False,
    insert: Callable[[], Any] | None = None,
) -> None:
    """Write `job` queued: pending, or waiting on `after` (or, with `waiting`, until something
    else releases it: a batch's `on_finish`). A new instance is inserted (by `insert`, or
    `save()`); a saved one must be new. Refused duplicates raise `DuplicateJob` (the row stays
    as it was); so do parents that do not exist (`JobStateError`), before anything is
    written."""
    opened = batches.current()
    if not after and not waiting and opened is None:
        _write(job, using, JobState.PENDING, changes, insert)
        return
    adding = job._state.adding
    try:
        with transaction.atomic(using=using):
            state, parents = JobState.WAITING if waiting else JobState.PENDING, {}
            if after:
                state, extra, parents = wait_on(after, using)
                changes = {**changes, **extra}
            if opened is not None:
                changes = {**changes, "has_dependents": True}
            _write(job, using, state, changes, insert)
            if after:
                link(job, parents, using)
            if opened is not None:
                opened.join([job], using)
                if state == JobState.CANCELLED:  # ended already: it counts at once
                    batches.count_endings(opened.pk, state, 1, using)
    except BaseException:
        if adding and not job._state.adding:  # written, then rolled back: unsaved again
            job.pk, job._state.adding, job._state.db = None, True, None
            job.state = JobState.NEW
        raise


def _write(
    job: Job, using: str, state: str, changes: dict[str, Any], insert: Callable[[], Any] | None
) -> None:
    model = type(job)
    if job._state.adding:
        for name, value in changes.items():
            setattr(job, name, value)
        job.state = state
        try:
            refusing_duplicates(
                model,
                using,
                insert or (lambda: models.Model.save(job, using=using)),
                lambda: [key_of(job)],
            )
        except Exception:
            job.state = JobState.NEW
            raise
        if state == JobState.PENDING and insert is None:
            wake_workers_on_commit(using, [hint_for(job.queue, model)])
    elif not refusing_duplicates(
        model,
        using,
        lambda: job._transition_row(NEW, state, **changes),
        lambda: list(job._same_row().values(*key_columns(model))),
    ):
        raise JobStateError(
            f"{job.label} cannot be enqueued: it is {job._current_state()}, and enqueue() "
            "takes a new row (use requeue() for failed or cancelled ones)"
        )


def join_open_batch(jobs: Sequence[Job]) -> batches.Batch | None:
    """Mark `jobs`, about to be inserted, as members of the open batch, if there is one; the
    caller passes them to its `join()` once they are written."""
    opened = batches.current()
    if opened is not None:
        for job in jobs:
            job.has_dependents = True
    return opened


def enqueue_changes(
    *,
    run_at: datetime | None,
    delay: timedelta | float | None,
    priority: int | None,
    queue: str | None,
    using: str,
) -> dict[str, Any]:
    """The fields `enqueue()` and `bulk_enqueue()` set, with their arguments validated.

    "Now" is the database server's (`timesource.refresh`): a job enqueued on a host whose
    clock is ahead must not wait for that host's time to come.
    """
    timesource.refresh(using)
    now = timesource.now()
    changes: dict[str, Any] = {
        "requested_at": now,
        "run_at": start_time(now, run_at, delay),
        "traceparent": current_traceparent(),  # the enqueuing trace, if any (jobs.tracing)
    }
    if priority is not None:
        changes["priority"] = validate_priority(priority)
    if queue is not None:
        changes["queue"] = validate_queue_name(queue)
    return changes


def start_time(now: datetime, run_at: datetime | None, delay: timedelta | float | None) -> datetime:
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
