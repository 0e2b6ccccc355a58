"""Unique jobs: at most one active (pending or running) row per `unique_on` key.

The database enforces it: `unique_on` is a partial unique constraint over the active states
(`options.unique_constraint`), so no race, raw SQL or admin edit can leave two active rows with
one key. What is here only words the refusal: every write that may make rows active (the
enqueues, requeue) runs in a savepoint through `refusing_duplicates()`, which turns the
database's IntegrityError into `DuplicateJob` naming the active job, and leaves the caller's
transaction usable. Reading that job happens after the refusal, so it may have finished in
between: then the write is simply tried again.

On MariaDB and MySQL, writers racing for one key can also be refused with a deadlock: each
waits for a shared lock on the key's index entry and then wants it exclusively. InnoDB rolls
back one of them, its whole transaction, not a savepoint; so that write is tried again when it
was the whole transaction, and otherwise raised for the caller to retry theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.db import IntegrityError, OperationalError, connections, models, transaction

from jobs.errors import DuplicateJob
from jobs.models.options import ACTIVE_STATES, unique_constraint, unique_fields

if TYPE_CHECKING:
    from jobs.models.job import Job

# How often a write refused by `unique_on` is tried again when the active job that held the
# key has finished before it could be read (each retry needs such a finish to happen again).
DUPLICATE_RETRIES = 5
# How often a write that was its own transaction is tried again after InnoDB chose it as a
# deadlock's victim (the error InnoDB gives is 1213).
DEADLOCK_RETRIES = 5
INNODB_DEADLOCK = 1213
# Keys per query when looking for the active job behind a refused bulk write (SQLite limits
# how deep an expression may nest, and each key is one more OR).
KEYS_PER_QUERY = 100
T = TypeVar("T")


def refusing_duplicates(
    model: type[Job], using: str, write: Callable[[], T], keys: Callable[[], list[dict]]
) -> T:
    """`write()`, which may make rows of `model` active; for a model with `unique_on`, in a
    savepoint, with the database's refusal of a second active row per key raised as
    `DuplicateJob` naming the active job (its `existing`).

    The savepoint is rolled back, so the caller's transaction carries on and the rows stay as
    they were. `keys()` gives the keys the write was making active (`{column: value}` each),
    read after the refusal; if no active job holds any of them any more (it finished between
    the refused write and the read), the write is tried again, up to `DUPLICATE_RETRIES`
    times. An IntegrityError from anything else is raised as it is. A deadlock (InnoDB's,
    see the module) is retried up to `DEADLOCK_RETRIES` times when the write is its own
    transaction, and raised inside the caller's, which InnoDB has rolled back.
    """
    if not unique_fields(model):
        return write()
    own_transaction = not connections[using].in_atomic_block
    duplicates = deadlocks = 0
    while True:
        try:
            with transaction.atomic(using=using):
                return write()
        except IntegrityError as exc:
            if not _breaks_unique_on(exc, model):
                raise
            duplicate = _duplicate(model, using, keys())
            if duplicate is not None:
                raise duplicate from exc
            duplicates += 1
            if duplicates == DUPLICATE_RETRIES:
                raise
        except OperationalError as exc:
            deadlocks += 1
            if not (own_transaction and _deadlock(exc)) or deadlocks == DEADLOCK_RETRIES:
                raise


def _deadlock(exc: OperationalError) -> bool:
    """Whether InnoDB rolled the transaction back to end a deadlock (MariaDB, MySQL)."""
    return bool(exc.args) and exc.args[0] == INNODB_DEADLOCK


def _breaks_unique_on(exc: IntegrityError, model: type[Job]) -> bool:
    """Whether `exc` is the refusal of `model`'s unique constraint, as far as the database
    says: PostgreSQL names the constraint, MariaDB and MySQL the index ("Duplicate entry
    '...' for key 'name'"); SQLite only says a unique constraint failed."""
    constraint = unique_constraint(model)
    diag = getattr(exc.__cause__, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return constraint is not None and diag.constraint_name == constraint.name
    if (message := str(exc)).startswith("Duplicate entry") or "(1062," in message:
        return constraint is not None and (
            f"key '{constraint.name}'" in message or f".{constraint.name}'" in message
        )
    return "UNIQUE" in message.upper()


def _duplicate(model: type[Job], using: str, keys: list[dict]) -> DuplicateJob | None:
    """The error for a refused write of `keys`: two of them alike, or the active job holding
    one; None when neither (the holder has finished since)."""
    columns = key_columns(model)
    keys = [key for key in keys if None not in key.values()]  # NULL never collides
    seen = set()
    for key in keys:
        values = tuple(key[column] for column in columns)
        if values in seen:
            return DuplicateJob(
                f"two of the {model.__name__} jobs written together have the same unique_on key "
                f"({_describe(key)}), and at most one may be active: pass one of them"
            )
        seen.add(values)
    active = model._base_manager.using(using).filter(state__in=ACTIVE_STATES)
    for start in range(0, len(keys), KEYS_PER_QUERY):
        either = models.Q(pk__in=[])
        for key in keys[start : start + KEYS_PER_QUERY]:
            either |= models.Q(**key)
        if (existing := active.filter(either).order_by("pk").first()) is not None:
            key = {column: getattr(existing, column) for column in columns}
            return DuplicateJob(
                f"{model.__name__} with {_describe(key)} is already active: {existing.label} "
                f"is {existing.state}; wait for it to finish or cancel it (use "
                f"{model.__name__}.objects.get_or_enqueue() to get it instead of this error)",
                existing=existing,
            )
    return None


def key_columns(model: type[Job]) -> list[str]:
    """The attribute names (`account_id` for `account`) of the model's `unique_on` fields."""
    return [model._meta.get_field(name).attname for name in unique_fields(model)]


def key_of(job: Job) -> dict:
    return {column: getattr(job, column) for column in key_columns(type(job))}


def _describe(key: dict) -> str:
    return ", ".join(f"{column}={value!r}" for column, value in key.items())


def unsaved(jobs: list[Job]) -> list[Job]:
    """`jobs` as new, unsaved instances again: a refused bulk insert may have set the
    primary keys of an earlier batch before its savepoint was rolled back."""
    for job in jobs:
        if job._state.adding is False:
            job.pk, job._state.adding, job._state.db = None, True, None
    return jobs
