"""What every job model gets from its class: row defaults from class attributes, the
partial indexes its table needs, and the partial unique constraint its `unique_on` asks for.

`queue = "emails"` on a job model sets the default of its `queue` field (and likewise
`priority`, `max_attempts`, `timeout`), so every row still carries its own values that
`enqueue()` can override. The indexes are added to every concrete job table, so a project's
own job models get them in their migrations like any index of their own.

`unique_on = ("account", "report")` becomes a unique constraint over those columns limited to
the active states (`ACTIVE_STATES`), so the database itself refuses a second waiting, pending
or running row with the same values, whoever writes it (the ORM, the admin, raw SQL, a race of
ten processes), and finished rows never block a new one. A NULL in a key column never collides, as
in any SQL unique index.

`concurrency_limit = 2` (with or without `concurrency_key = "account"`) gives the table a
`concurrency_slot` column, a partial unique index over (key, slot) for the running state and a
check that a running keyed row holds a slot below the limit: the database's own guarantee that
no more than the limit run per key (`jobs.db.limits`). `rate_limit` adds an index on
`started_at`, which its sliding window reads.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.utils import names_digest
from django.db.models.base import ModelBase

from jobs.db.limits import SLOT_FIELD, is_positive_int, limits_of
from jobs.states import FINISHED_STATES, JobState

# Class attributes a job model may set to give its rows defaults (`queue = "emails"`).
ROW_OPTIONS = ("queue", "priority", "max_attempts", "timeout")

# The states `unique_on` counts: at most one row per key among them (a row waiting for other
# jobs is as good as queued).
ACTIVE_STATES = (JobState.WAITING, JobState.PENDING, JobState.RUNNING)


class JobBase(ModelBase):
    """Turns `queue = "emails"` on a job model into the default of its `queue` field.

    Plain Django would read a class attribute named like an inherited field as removing
    that field; here it sets the field's default instead, so every row still carries its
    own queue, priority and max_attempts that `enqueue()` can override. It also gives every
    concrete job table its partial indexes, and the unique constraint of its `unique_on`
    (inherited from an abstract parent too; a proxy shares its concrete model's table, so it
    gets no constraint of its own, and `manage.py check` holds it to its model's key).
    """

    def __new__(mcs, name: str, bases: tuple, attrs: dict, **kwargs: Any) -> type:
        defaults = {
            option: attrs.pop(option)
            for option in ROW_OPTIONS
            if option in attrs and not isinstance(attrs[option], models.Field)
        }
        if _declares_a_concurrency_limit(attrs, bases) and _is_concrete_root(attrs, bases):
            attrs.setdefault(
                SLOT_FIELD,
                models.PositiveSmallIntegerField(
                    null=True,
                    blank=True,
                    editable=False,
                    help_text="Which of its key's concurrency_limit slots the running row holds.",
                ),
            )
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        for option, value in defaults.items():
            field = cls._meta.get_field(option)
            field.default = value
            field.__dict__.pop("_get_default", None)  # Django caches the default getter
        if not cls._meta.abstract and not cls._meta.proxy and not cls._meta.parents:
            db_table = cls._meta.db_table
            indexes = _lifecycle_indexes(db_table, cls._meta.pk.name)
            cls._meta.indexes = [*cls._meta.indexes, *indexes]
            # Migrations read Meta options from original_attrs, so the index must be there too.
            cls._meta.original_attrs["indexes"] = cls._meta.indexes
            constraints = [c for c in (unique_constraint(cls), *limit_constraints(cls)) if c]
            if constraints:
                cls._meta.constraints = [*cls._meta.constraints, *constraints]
                cls._meta.original_attrs["constraints"] = cls._meta.constraints
            if (limits := limits_of(cls)) is not None and limits.rate is not None:
                started = models.Index(fields=["started_at"], name=f"{_prefix(db_table)}_rate")
                cls._meta.indexes = [*cls._meta.indexes, started]
                cls._meta.original_attrs["indexes"] = cls._meta.indexes
        return cls


def _declares_a_concurrency_limit(attrs: dict, bases: tuple) -> bool:
    """Whether the class being made has a well-formed `concurrency_limit`, its own or
    inherited."""
    # As attribute lookup would find it: the first base (in order, each with its own MRO)
    # that has one.
    inherited = next((b.concurrency_limit for b in bases if hasattr(b, "concurrency_limit")), None)
    return is_positive_int(attrs.get("concurrency_limit", inherited))


def _is_concrete_root(attrs: dict, bases: tuple) -> bool:
    """Whether the class being made has a table of its own: not abstract, not a proxy, not
    a multi-table child (whose slot would live in its parent's table)."""
    meta = attrs.get("Meta")
    if getattr(meta, "abstract", False) or getattr(meta, "proxy", False):
        return False
    return not any(hasattr(base, "_meta") and not base._meta.abstract for base in bases)


def limit_constraints(model: type) -> list[models.BaseConstraint]:
    """For a model with a concurrency limit: a partial unique index over (key, slot) of its
    running rows, and a check that every running keyed row holds a slot below the limit."""
    limits = limits_of(model)
    fields = {field.name for field in model._meta.concrete_fields}
    if limits is None or limits.concurrency is None or SLOT_FIELD not in fields:
        return []
    prefix = _prefix(model._meta.db_table)
    running = models.Q(state=JobState.RUNNING)
    keyless = models.Q(**{f"{limits.key}__isnull": True})
    in_range = models.Q(
        **{
            f"{SLOT_FIELD}__isnull": False,
            f"{SLOT_FIELD}__gte": 0,
            f"{SLOT_FIELD}__lt": limits.concurrency,
        }
    )
    return [
        models.UniqueConstraint(
            fields=[*([limits.key] if limits.key else []), SLOT_FIELD],
            condition=running,
            name=f"{prefix}_slot",
        ),
        models.CheckConstraint(
            condition=~running | keyless | in_range if limits.key else ~running | in_range,
            name=f"{prefix}_room",
        ),
    ]


def unique_fields(model: type) -> tuple[str, ...]:
    """The field names of `model`'s `unique_on`, or () when it has none or it is malformed
    (`manage.py check` reports a malformed one: jobs.E013)."""
    names = getattr(model, "unique_on", None)
    if not isinstance(names, tuple | list) or not all(isinstance(n, str) for n in names):
        return ()
    return tuple(names)


def unique_constraint(model: type) -> models.UniqueConstraint | None:
    """The partial unique constraint for `model.unique_on`, named like the lifecycle indexes;
    None without a well-formed `unique_on` naming only concrete fields of the model."""
    names = unique_fields(model)
    concrete = {field.name for field in model._meta.concrete_fields}
    if not names or not concrete.issuperset(names):
        return None
    return models.UniqueConstraint(
        fields=list(names),
        condition=models.Q(state__in=list(ACTIVE_STATES)),
        name=f"{_prefix(model._meta.db_table)}_uniq",
    )


def _prefix(db_table: str) -> str:
    """What every framework index name of a table starts with: Django caps index names at 30
    characters, hence the digest."""
    return f"{db_table[:16]}_{names_digest(db_table, length=8)}"


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
    new row costs two index entries, a pending one four, a running one two.
    """
    prefix = _prefix(db_table)
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
