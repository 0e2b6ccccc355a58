"""Jobs that wait for other jobs: the edges of `enqueue(after=[...])` and of batches.

A `Dependency` row says a child job waits on a parent job's ending, across any job models
(each end is named by its model's label and primary key). The child waits in state `waiting`,
which no claim sees. A parent row that others wait on says so in its own `has_dependents`
column, so ending a job with no dependents costs nothing here: the statement that records an
outcome returns that column, and only rows with it set come here (`ended`), in the same
transaction as their outcome.

Why it cannot miss an ending: the child's enqueue locks its parents' rows (setting
`has_dependents`) before it decides whether to wait, and a parent's outcome is an UPDATE of
the same row. Whichever comes second sees the other's committed work: the child reads the
parent's final state, or the outcome's UPDATE reads `has_dependents` set and its edges
committed. A child with several parents is locked before its remaining parents are counted,
so of two parents ending at once, the second counts after the first has committed.

An edge of a batch (`batch` set) waits for any ending, not for success: it counts toward its
batch (`jobs.models.batch`), whose `on_finish` job is the child. Any other edge waits for
success: a parent that fails for good or is cancelled cancels its waiting children, naming
itself, and so on down the graph; requeueing it brings back the children it cancelled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import models

from jobs import timesource
from jobs.errors import JobStateError
from jobs.models.batch import count_endings, uncount_endings
from jobs.states import FINISHED_STATES, JobState

if TYPE_CHECKING:
    from jobs.models.job import Job

# `error_type` of a child cancelled because a parent did not succeed: what tells a revival
# (`revived`) that the cancel was the graph's and not an operator's.
PARENT_ENDED = "jobs.ParentEnded"
WAITING = frozenset({JobState.WAITING})
# Jobs by (model label, primary key as text), as the edges name them, with their states.
Ends = dict[tuple[str, str], str]


class Dependency(models.Model):
    """A child job waiting on a parent job's ending (`enqueue(after=...)`, batches)."""

    child_model = models.CharField(max_length=100, help_text="app_label.Model of the child.")
    child_pk = models.CharField(max_length=64)
    parent_model = models.CharField(max_length=100, help_text="app_label.Model of the parent.")
    parent_pk = models.CharField(max_length=64)
    batch = models.ForeignKey(
        "jobs.Batch",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="edges",
        help_text="Set for a batch member: the child is the batch's on_finish job, if any.",
    )
    parent_state = models.CharField(
        max_length=16, blank=True, help_text="How the parent ended; empty until it has."
    )
    cancelled_child = models.BooleanField(
        default=False, help_text="The parent's failure cancelled the child (requeue revives it)."
    )

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["parent_model", "parent_pk", "child_model", "child_pk"],
                name="jobs_dependency_edge",
            ),
        )
        indexes = (models.Index(fields=["child_model", "child_pk"], name="jobs_dependency_child"),)

    def __str__(self) -> str:
        return f"{self.child_model}#{self.child_pk} after {self.parent_model}#{self.parent_pk}"

    def parent(self) -> Job | None:
        return _row(self.parent_model, self.parent_pk, self._state.db)

    def child(self) -> Job | None:
        return _row(self.child_model, self.child_pk, self._state.db) if self.child_pk else None


def wait_on(parents: Sequence[Job], using: str) -> tuple[str, dict[str, Any], Ends]:
    """Lock `parents` for a child about to be enqueued, and say what the child becomes:
    pending if every parent has succeeded, cancelled (naming the parent) if one failed or was
    cancelled, else waiting; with the changes that go with it, and the parents' states for
    `link()`, which the caller calls once the child is written, in this transaction."""
    states = lock_parents(parents, using)
    unfinished = [end for end, state in states.items() if state != JobState.SUCCEEDED]
    if not unfinished:
        return JobState.PENDING, {}, states
    blocker = next((end for end in unfinished if states[end] in FINISHED_STATES), None)
    if blocker is None:
        return JobState.WAITING, {}, states
    return JobState.CANCELLED, cancelled_changes("#".join(blocker), states[blocker]), states


def lock_parents(parents: Iterable[Job], using: str) -> Ends:
    """Lock the rows of `parents` (in a fixed order, so two enqueues cannot deadlock), mark
    them as waited on and return their current states; a parent that does not exist is an
    error (so a cycle can never form: a job can only wait on jobs that already exist)."""
    by_model: dict[type[Job], list[Any]] = defaultdict(list)
    for parent in parents:
        if not hasattr(parent, "_transition_row"):
            raise JobStateError(f"a job can only wait on jobs, not on {parent!r}")
        if parent.pk is None or parent._state.adding:
            raise JobStateError(f"a job can only wait on saved jobs, not on unsaved {parent!r}")
        by_model[type(parent)._meta.concrete_model].append(parent.pk)
    states: Ends = {}
    for model in sorted(by_model, key=lambda model: model._meta.label):
        rows = model._rows(using).filter(pk__in=by_model[model])
        found = dict(rows.select_for_update().order_by("pk").values_list("pk", "state"))
        if missing := set(by_model[model]) - set(found):
            raise JobStateError(
                f"cannot wait on {model._meta.label}#{sorted(missing)[0]}: it does not exist"
            )
        rows.filter(has_dependents=False).update(has_dependents=True)
        states.update({(model._meta.label, str(pk)): state for pk, state in found.items()})
    return states


def link(child: Job, parents: Ends, using: str) -> None:
    """Write the edges from `parents` (`wait_on`'s states) to `child`, now written, each with
    how its parent has already ended, if it has: an edge to a parent that failed is what
    requeueing that parent follows to revive the child."""
    Dependency.objects.using(using).bulk_create(
        Dependency(
            child_model=_label(type(child)),
            child_pk=str(child.pk),
            parent_model=label,
            parent_pk=pk,
            parent_state=state if state in FINISHED_STATES else "",
            cancelled_child=child.state == JobState.CANCELLED
            and state in (JobState.FAILED, JobState.CANCELLED),
        )
        for (label, pk), state in parents.items()
    )


def cancelled_changes(parent_label: str, parent_state: str) -> dict[str, Any]:
    """A waiting child's cancel: finished now, the reason naming the parent that ended it."""
    return {
        "finished_at": timesource.now(),
        "error_type": PARENT_ENDED,
        "error_message": f"{parent_label} {parent_state}; this job waited for it to succeed",
        "error_traceback": "",
    }


def ended(model: type[Job], using: str, state: str, pks: Iterable[Any]) -> None:
    """Rows of `model` that others wait on have just ended in `state`, in this transaction:
    resolve their edges, count them toward their batches, and release, or cancel, their
    waiting children."""
    label, keys = _label(model), sorted(str(pk) for pk in pks)
    edges = list(
        Dependency.objects.using(using)
        .filter(parent_model=label, parent_pk__in=keys, parent_state="")
        .select_for_update()
        .order_by("pk")
    )
    if not edges:
        return
    Dependency.objects.using(using).filter(pk__in=[edge.pk for edge in edges]).update(
        parent_state=state
    )
    batched: dict[int, int] = defaultdict(int)
    children: dict[str, dict[str, str]] = defaultdict(dict)  # model -> child pk -> parent pk
    for edge in edges:
        if edge.batch_id is not None:
            batched[edge.batch_id] += 1
        else:
            children[edge.child_model].setdefault(edge.child_pk, edge.parent_pk)
    for batch_id in sorted(batched):
        count_endings(batch_id, state, batched[batch_id], using)
    for child_label in sorted(children):
        child_model = apps.get_model(child_label)
        if state == JobState.SUCCEEDED:
            _release(child_model, using, children[child_label])
        else:
            _cancel(child_model, using, children[child_label], label, state)


def _release(model: type[Job], using: str, parents_of: dict[str, str]) -> None:
    """Waiting children of a parent that succeeded become pending if no other parent of
    theirs is still to succeed; each child is locked before its parents are counted."""
    rows = model._rows(using)
    locked = list(
        rows.filter(pk__in=list(parents_of), state=JobState.WAITING)
        .select_for_update()
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not locked:
        return
    blocked = set(
        Dependency.objects.using(using)
        .filter(child_model=_label(model), child_pk__in=[str(pk) for pk in locked])
        .filter(batch=None)
        .exclude(parent_state=JobState.SUCCEEDED)
        .values_list("child_pk", flat=True)
    )
    ready = [pk for pk in locked if str(pk) not in blocked]
    if ready:
        rows.filter(pk__in=ready)._transition(WAITING, JobState.PENDING, run_at=timesource.now())


def _cancel(
    model: type[Job], using: str, parents_of: dict[str, str], parent_label: str, state: str
) -> None:
    """Waiting children of a parent that failed or was cancelled end cancelled, naming it
    (their own children follow, through `_transition`). Every edge from the parent to a child
    cancelled by the graph is marked, so requeueing any such parent can revive the child."""
    rows = model._rows(using)
    for child_pk, parent_pk in sorted(parents_of.items()):
        rows.filter(pk=child_pk)._transition(
            WAITING, JobState.CANCELLED, **cancelled_changes(f"{parent_label}#{parent_pk}", state)
        )
    held = rows.filter(pk__in=list(parents_of), state=JobState.CANCELLED, error_type=PARENT_ENDED)
    Dependency.objects.using(using).filter(
        parent_model=parent_label,
        parent_pk__in=list(parents_of.values()),
        child_model=_label(model),
        child_pk__in=[str(pk) for pk in held.values_list("pk", flat=True)],
        batch=None,
    ).update(cancelled_child=True)


def revived(model: type[Job], using: str, pks: Iterable[Any]) -> None:
    """Rows of `model` that others wait on were requeued (they will end again): their
    edges wait again, a batch that has not finished forgets their ending, and children they
    cancelled wait again once no other parent holds them cancelled."""
    label, keys = _label(model), sorted(str(pk) for pk in pks)
    edges = list(
        Dependency.objects.using(using)
        .filter(parent_model=label, parent_pk__in=keys)
        .exclude(parent_state="")
        .select_for_update()
        .order_by("pk")
    )
    reset, held = [], defaultdict(set)
    counted: dict[int, list[Dependency]] = defaultdict(list)
    for edge in edges:
        if edge.batch_id is None:
            reset.append(edge.pk)
        else:
            counted[edge.batch_id].append(edge)
        if edge.cancelled_child:
            held[edge.child_model].add(edge.child_pk)
    for batch_id in sorted(counted):
        endings = Counter(edge.parent_state for edge in counted[batch_id])
        if uncount_endings(batch_id, endings, using):
            reset.extend(edge.pk for edge in counted[batch_id])
    Dependency.objects.using(using).filter(pk__in=reset).update(
        parent_state="", cancelled_child=False
    )
    for child_label in sorted(held):
        still_held = set(
            Dependency.objects.using(using)
            .filter(child_model=child_label, child_pk__in=held[child_label], cancelled_child=True)
            .values_list("child_pk", flat=True)
        )
        free = sorted(held[child_label] - still_held)
        apps.get_model(child_label)._rows(using).filter(
            pk__in=free, state=JobState.CANCELLED, error_type=PARENT_ENDED
        )._transition(
            frozenset({JobState.CANCELLED}),
            JobState.WAITING,
            finished_at=None,
            error_type="",
            error_message="",
        )


def requeued(model: type[Job], using: str, pks: Sequence[Any]) -> None:
    """Requeued rows of `model` that wait on parents not all succeeded go back to waiting:
    a requeue puts a child where its parents say, not past them."""
    blocked = set(
        Dependency.objects.using(using)
        .filter(child_model=_label(model), child_pk__in=[str(pk) for pk in pks], batch=None)
        .exclude(parent_state=JobState.SUCCEEDED)
        .values_list("child_pk", flat=True)
    )
    if blocked:
        model._rows(using).filter(pk__in=sorted(blocked))._transition(
            frozenset({JobState.PENDING}), JobState.WAITING
        )


def forget(model: type[Job], using: str, pks: Sequence[Any]) -> int:
    """Delete the edges naming pruned rows of `model` (finished, so nothing waits on them any
    more); a batch keeps its counts. Returns how many edges it deleted."""
    label, keys = _label(model), [str(pk) for pk in pks]
    edges = Dependency.objects.using(using).filter(
        models.Q(parent_model=label, parent_pk__in=keys)
        | models.Q(child_model=label, child_pk__in=keys)
    )
    return edges._raw_delete(using)


def _label(model: type[Job]) -> str:
    return model._meta.concrete_model._meta.label


def _row(label: str, pk: str, using: str | None) -> Job | None:
    try:
        model = apps.get_model(label)
    except LookupError:
        return None
    return model._rows(using).filter(pk=pk).first()
