"""Batches: jobs enqueued together, and a job enqueued exactly once when all have ended.

    with batch(on_finish=ImportReport(import_run=run)) as imports:
        for row in rows:
            ImportRow.objects.create(import_run=run, line=row).enqueue()

A `Batch` is a row: who made it, how many members it has and how many ended in each final
state. Every job enqueued in the block joins it (`enqueue()`, `objects.enqueue()`,
`bulk_enqueue()`): the member row is written with `has_dependents` set, and an edge (a
`jobs.models.dependency.Dependency` whose `batch` is set) in its enqueue transaction. The
`on_finish` job is written when the block opens, waiting; it becomes pending once the block
has closed and every member has ended (succeeded, failed for good or cancelled).

Exactly once, whatever the timing: every member's ending is counted in the transaction
that records it, under the batch row's lock, so the counts are never lost or doubled, and
the one transaction that finds the batch closed and complete sets its `finished_at` (guarded
on it being unset) and releases `on_finish` (guarded on it still waiting). A worker killed
mid-way rolls back its count with its outcome, and the rescued member is counted when it
ends. A member requeued before the batch finishes has its earlier ending forgotten; after,
the batch stays finished.

Jobs that a member enqueues while it runs do not join (a worker's thread is outside the
block); a member that wants its follow-ups in the batch says so with
`Batch.objects.of(self).adding()`.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django.apps import apps
from django.db import models, router, transaction
from django.db.models import F, QuerySet

from jobs import timesource
from jobs.errors import ConfigurationError, JobStateError
from jobs.identity import process_identity
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models.job import Job

# Each final state's counter on the batch row.
COUNTERS = {
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}
WAITING = frozenset({JobState.WAITING})
# Members read per query (`Batch.members()`).
MEMBERS_PER_QUERY = 500
_open: ContextVar[Batch | None] = ContextVar("jobs_open_batch", default=None)


class BatchQuerySet(models.QuerySet):
    def of(self, job: Job) -> Batch | None:
        """The batch `job` is a member of, if any."""
        return (
            self.using(job._state.db)
            .filter(
                edges__parent_model=job._meta.concrete_model._meta.label,
                edges__parent_pk=str(job.pk),
            )
            .first()
        )

    def finished_by(self, job: Job) -> Batch | None:
        """The batch whose `on_finish` job is `job`: what a callback reads its counts from."""
        return (
            self.using(job._state.db)
            .filter(on_finish_model=job._meta.concrete_model._meta.label, on_finish_pk=str(job.pk))
            .first()
        )


class Batch(models.Model):
    """Jobs enqueued together (`jobs.batch`), and the job to enqueue once all have ended."""

    created_at = models.DateTimeField()
    created_by = models.CharField(
        max_length=255, help_text="The process (host:pid) and the line of code that opened it."
    )
    description = models.CharField(max_length=255, blank=True)
    on_finish_model = models.CharField(max_length=100, blank=True)
    on_finish_pk = models.CharField(max_length=64, blank=True)
    total = models.PositiveIntegerField(default=0, help_text="Members so far.")
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the block that opened it ended."
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was closed and every member had ended."
    )

    objects = BatchQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch #{self.pk}" + (f" ({self.description})" if self.description else "")

    @property
    def ended(self) -> int:
        """Members that have ended, in any final state."""
        return self.succeeded + self.failed + self.cancelled

    @property
    def state(self) -> str:
        if self.finished_at is not None:
            return "finished"
        return "open" if self.closed_at is None else "running"

    def on_finish(self) -> Job | None:
        """The job enqueued when the batch finishes (waiting until then), if any."""
        if not self.on_finish_model:
            return None
        model = apps.get_model(self.on_finish_model)
        return model._rows(self._state.db).filter(pk=self.on_finish_pk).first()

    def members(self, state: str | None = None) -> list[Job]:
        """The member jobs (of any job models), in the order they joined; only those in
        `state` if given."""
        order = list(self.edges.order_by("pk").values_list("parent_model", "parent_pk"))
        found = {}
        for label, rows in self._member_rows(order):
            if state is not None:
                rows = rows.filter(state=state)
            found.update({(label, str(job.pk)): job for job in rows})
        return [found[end] for end in order if end in found]

    def members_by_state(self) -> dict[str, int]:
        """How many members are in each state now (new, pending, running, ... ), read from
        the members' own rows: the live picture, where the counters say how many ended."""
        counts: dict[str, int] = defaultdict(int)
        ends = self.edges.values_list("parent_model", "parent_pk")
        for _label, rows in self._member_rows(ends):
            for state, count in rows.values_list("state").annotate(n=models.Count("pk")):
                counts[state] += count
        return dict(counts)

    def _member_rows(self, ends: Iterable[tuple[str, str]]) -> Iterator[tuple[str, QuerySet]]:
        """The rows `ends` names, per job model, `MEMBERS_PER_QUERY` keys per query (SQLite
        limits a statement's parameters)."""
        by_model: dict[str, list[str]] = defaultdict(list)
        for label, pk in ends:
            by_model[label].append(pk)
        for label, pks in by_model.items():
            table = apps.get_model(label)._rows(self._state.db)
            for start in range(0, len(pks), MEMBERS_PER_QUERY):
                yield label, table.filter(pk__in=pks[start : start + MEMBERS_PER_QUERY])

    @contextmanager
    def adding(self) -> Iterator[Batch]:
        """Jobs enqueued in this block join this batch, which must not have finished: how a
        member puts the jobs it enqueues into its own batch."""
        token = _open.set(self)
        try:
            yield self
        finally:
            _open.reset(token)

    def join(self, members: Sequence[Job], using: str) -> None:
        """Make `members`, just written with `has_dependents` set, members of this batch, in
        their enqueue transaction."""
        if using != self._state.db:
            raise ConfigurationError(
                f"{members[0].label} is enqueued in database {using!r} but its batch is in "
                f"{self._state.db!r}: a batch and its members share a database"
            )
        grown = Batch.objects.using(using).filter(pk=self.pk, finished_at=None)
        if not grown.update(total=F("total") + len(members)):
            raise JobStateError(f"{self} has finished: no job can join it any more")
        edge = self.edges.model  # jobs.models.dependency.Dependency
        edge.objects.using(using).bulk_create(
            edge(
                parent_model=member._meta.concrete_model._meta.label,
                parent_pk=str(member.pk),
                child_model=self.on_finish_model,
                child_pk=self.on_finish_pk,
                batch=self,
            )
            for member in members
        )


@contextmanager
def batch(
    *, on_finish: Job | None = None, description: str = "", using: str | None = None
) -> Iterator[Batch]:
    """Open a batch: every job enqueued in the block joins it, and `on_finish` (an unsaved or
    new job) is enqueued once the block has ended and every member has ended. It is written
    now, waiting, so it can be seen (and cancelled) meanwhile. An empty batch finishes when
    the block ends. If the block raises, the members enqueued so far still run and the batch
    still finishes (inside a transaction that rolls back, nothing of it is left)."""
    if on_finish is not None and not hasattr(on_finish, "_transition_row"):
        raise ConfigurationError(f"batch(on_finish=...) takes a job, not {on_finish!r}")
    using = using or router.db_for_write(
        type(on_finish) if on_finish is not None else Batch, instance=on_finish
    )
    with transaction.atomic(using=using):
        opened = Batch(created_at=timesource.now(), created_by=_creator(), description=description)
        if on_finish is not None:
            on_finish._enqueue_waiting(using)
            opened.on_finish_model = on_finish._meta.concrete_model._meta.label
            opened.on_finish_pk = str(on_finish.pk)
        opened.save(using=using)
    token = _open.set(opened)
    try:
        yield opened
    finally:
        _open.reset(token)
        with transaction.atomic(using=using):
            _close(opened, using)


def current() -> Batch | None:
    """The batch that jobs enqueued here and now join, if any."""
    return _open.get()


@contextmanager
def outside() -> Iterator[None]:
    """No batch here: a job run in the thread that enqueued it (`Job.run()`, inline mode) is
    not in its enqueuer's block, and what it enqueues does not join."""
    token = _open.set(None)
    try:
        yield
    finally:
        _open.reset(token)


def count_endings(batch_id: int, state: str, count: int, using: str) -> None:
    """`count` members of the batch ended in `state`, in this transaction: count them, and
    finish the batch if that was the last."""
    locked = Batch.objects.using(using).select_for_update().get(pk=batch_id)
    counter = COUNTERS[state]
    Batch.objects.using(using).filter(pk=batch_id).update(**{counter: F(counter) + count})
    setattr(locked, counter, getattr(locked, counter) + count)
    _finish_if_complete(locked, using)


def uncount_endings(batch_id: int, endings: Mapping[str, int], using: str) -> bool:
    """Members that ended (`endings`: how many in each final state) were requeued: forget
    their endings, unless the batch has finished (then it stays finished, and their next
    endings are not counted). Says whether they were forgotten."""
    locked = Batch.objects.using(using).select_for_update().get(pk=batch_id)
    if locked.finished_at is not None:
        return False
    Batch.objects.using(using).filter(pk=batch_id).update(
        **{COUNTERS[state]: F(COUNTERS[state]) - count for state, count in endings.items()}
    )
    return True


def _close(opened: Batch, using: str) -> None:
    locked = Batch.objects.using(using).select_for_update().filter(pk=opened.pk).first()
    if locked is None:  # rolled back with the caller's transaction
        return
    locked.closed_at = timesource.now()
    Batch.objects.using(using).filter(pk=opened.pk).update(closed_at=locked.closed_at)
    _finish_if_complete(locked, using)
    opened.refresh_from_db()


def _finish_if_complete(locked: Batch, using: str) -> None:
    """Under the batch row's lock: if it is closed and every member has ended, finish it
    (once: guarded on `finished_at`) and release its `on_finish` job (guarded on waiting)."""
    if locked.closed_at is None or locked.finished_at is not None or locked.ended < locked.total:
        return
    now = timesource.now()
    if (
        not Batch.objects.using(using)
        .filter(pk=locked.pk, finished_at=None)
        .update(finished_at=now)
    ):
        return
    locked.finished_at = now
    if locked.on_finish_model:
        model = apps.get_model(locked.on_finish_model)
        model._rows(using).filter(pk=locked.on_finish_pk)._transition(
            WAITING, JobState.PENDING, run_at=now
        )


def _creator() -> str:
    """host:pid, and the line of the project's code that opened the batch."""
    for frame in inspect.stack(context=0)[2:]:
        if "contextlib" not in frame.filename and "/jobs/models/" not in frame.filename:
            where = os.path.relpath(frame.filename)
            if where.startswith(".."):  # outside the project's folder: say it all
                where = frame.filename
            return f"{process_identity()} at {where}:{frame.lineno}"[:255]
    return process_identity()
