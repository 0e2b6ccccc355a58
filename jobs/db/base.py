"""The claim: the pending -> running transition, as one statement two workers cannot both win.

It is the one state change not made through `JobQuerySet._transition`, because choosing
the rows and taking them must happen in the same statement (the ORM cannot say SKIP LOCKED
with RETURNING). It moves rows only out of `pending`, as `ALLOWED_FROM` permits: the inner
SELECT picks pending rows, and each engine keeps them pending until the UPDATE (a row lock,
or the single writer). The UPDATE does not test `state` again on purpose: given that test,
PostgreSQL may find the rows through the `(state, finished_at)` index, reading every pending
row instead of the few chosen ones by primary key.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from jobs.conf import lease_duration, listen_enabled
from jobs.states import JobState

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from jobs.models import Job

# The attributes Django puts on a model for a concrete field, whose only effect when set on a
# new instance is an entry in its `__dict__` (a foreign key's also forgets a cached related
# object, which a new instance has not got): what lets `RowLoader` skip `__init__`.
PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)


def claim_changes(now: datetime, claimant: str) -> dict[str, Any]:
    """What claiming writes on a row besides `state` and `attempts = attempts + 1`: when the
    attempt started, who has it and until when, and a fresh log and progress of its own.

    The one definition for both claims: the worker's claim statement and `run()`'s.
    """
    return {
        "started_at": now,
        "finished_at": None,
        "claimed_by": claimant,
        "lease_expires_at": now + lease_duration(),
        "log": "",
        "progress_done": None,
        "progress_total": None,
    }


# Queues to leave out (the paused ones), one sequence per job model, aligned with the models.
Skips = Sequence[Sequence[str]]


def _queues_filter(column: str, among: int, skip: int = 0) -> str:
    """The filter keeping rows in `among` queues (none: any) but `skip` (paused) ones."""
    keep = f" AND {column} IN ({', '.join(['%s'] * among)})" if among else ""
    return keep + (f" AND {column} NOT IN ({', '.join(['%s'] * skip)})" if skip else "")


class Engine:
    """What a worker needs from one database. Subclasses say how rows are kept exclusive.

    An engine is bound to one thread's connection (Django's connections are per thread),
    so each thread that talks to the database asks `engine_for()` for its own.
    """

    # Appended to the inner SELECT that picks the rows; how this database keeps two
    # workers from picking the same one.
    row_lock_clause = ""
    # Whether workers can be woken by the database (LISTEN/NOTIFY) instead of polling.
    can_wake_workers = False

    @property
    def wakes_workers(self) -> bool:
        """Whether idle workers on this database are woken when rows become runnable: the
        database can tell them (`can_wake_workers`) and `JOBS_LISTEN` is on. Otherwise they
        poll every `--interval`."""
        return self.can_wake_workers and listen_enabled()

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self._loaders: dict[type[Job], RowLoader] = {}
        self._move_statements: dict[tuple, str] = {}

    def claim(
        self,
        model: type[Job],
        *,
        queue: str | None,
        worker: str,
        now: datetime,
        limit: int = 1,
        skip_queues: Sequence[str] = (),
    ) -> list[Job]:
        """Take up to `limit` runnable rows of `model` (of `queue`, else any but `skip_queues`).

        Runnable means pending with `run_at` come; the rows are chosen by priority (higher
        first), then `run_at`, then id, and returned in that order. They come back running,
        each attempt counted, stamped with `started_at`, `worker` and a fresh lease, the
        previous attempt's log and progress cleared, with all their fields loaded for
        `perform()`. One statement, however many rows.
        """
        sql, params = self._claim_statement(
            model, queue=queue, worker=worker, now=now, limit=limit, skip=skip_queues
        )
        claimed = self._loader(model).load(self._fetch(sql, params))
        claimed.sort(key=lambda job: (-job.priority, job.run_at, job.pk))
        return claimed

    def move_row(
        self,
        job: Job,
        from_states: Collection[str],
        to_state: str,
        *,
        guard: dict[str, Any],
        changes: dict[str, Any],
        wake: str | None = None,
    ) -> bool:
        """Move `job`'s row to `to_state` if it is in `from_states` and matches `guard`.

        What finishing a job costs: one UPDATE by primary key, its text built once per shape
        of change, rather than a queryset compiled per job. Callers check the move against
        `ALLOWED_FROM` (see `Job._transition_row`). `wake` is the payload (see
        `jobs.db.wakeup.payload`) idle workers should hear once the move commits, where the
        database can tell them.
        """
        model = type(job)
        wake = wake if self.wakes_workers else None
        key = (model, len(from_states), tuple(guard), tuple(changes), wake is not None)
        if (sql := self._move_statements.get(key)) is None:
            update = self._move_statement(model, *key[1:4])
            sql = self._move_statements[key] = self._waking(update) if key[4] else update
        fields = model._meta
        params = [
            to_state,
            *(
                fields.get_field(name).get_db_prep_save(v, self.connection)
                for name, v in changes.items()
            ),
            job.pk,
            *from_states,
            *(
                fields.get_field(name).get_db_prep_value(v, self.connection)
                for name, v in guard.items()
            ),
        ]
        if wake is not None:
            params.append(wake)
        return self._count(sql, params) > 0

    def move_rows(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        rows: Sequence[tuple[Job, dict[str, Any]]],
    ) -> list[bool]:
        """Move each `(job, changes)` row of `model` to `to_state`, each only if it is still in
        `from_states` and still the attempt the job holds (`job._claim()`): how a worker
        records a batch of finished attempts, fenced per row exactly as `move_row` is.

        One statement for the batch (the rows must share the keys of `changes`); it wakes no
        worker, so a move back to pending goes through `move_row`. Returns, in order, whether
        each row moved.
        """
        if len(rows) == 1:
            ((job, changes),) = rows
            return [self.move_row(job, from_states, to_state, guard=job._claim(), changes=changes)]
        names = tuple(rows[0][1])
        meta, connection = model._meta, self.connection
        # One list per column, in the order `_batch_move_statement` names them: the primary
        # key, the claim that fences the row (attempt and claimant), then each change.
        columns: list[list[Any]] = [[job.pk for job, _changes in rows]]
        claims = [job._claim() for job, _changes in rows]
        for name in ("attempts", "claimed_by"):
            prep = meta.get_field(name).get_db_prep_value
            columns.append([prep(claim[name], connection) for claim in claims])
        for name in names:
            prep = meta.get_field(name).get_db_prep_save
            columns.append([prep(changes[name], connection) for _job, changes in rows])
        moved = {pk for (pk,) in self._move_batch(model, from_states, to_state, names, columns)}
        return [job.pk in moved for job, _changes in rows]

    def _move_batch(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        names: tuple[str, ...],
        columns: list[list[Any]],
    ) -> list[tuple]:
        """Run the batch move of `move_rows` on `columns` (see there); the moved rows' keys."""
        sql = self._batch_move_statement(model, len(from_states), names, len(columns[0]))
        params = [value for row in zip(*columns, strict=True) for value in row]
        return self._fetch(sql, [*params, to_state, *from_states])

    def _batch_move_statement(
        self, model: type[Job], from_count: int, names: tuple[str, ...], row_count: int
    ) -> str:
        """`WITH v AS (VALUES ...) UPDATE ... FROM v`: per-row values, per-row fence."""
        key = ("batch", model, from_count, names, row_count)
        if (sql := self._move_statements.get(key)) is not None:
            return sql
        quote = self.connection.ops.quote_name
        meta = model._meta
        table = quote(meta.db_table)
        state = quote(meta.get_field("state").column)
        fields = [meta.pk, meta.get_field("attempts"), meta.get_field("claimed_by")]
        fields += [meta.get_field(name) for name in names]
        aliases = [f"c{index}" for index in range(len(fields))]
        row = f"({', '.join(['%s'] * len(fields))})"
        cell = {
            alias: self._typed(f"v.{alias}", f) for alias, f in zip(aliases, fields, strict=True)
        }
        pk, attempts, claimed_by, *changed = aliases
        assignments = ", ".join(
            f"{quote(f.column)} = {cell[alias]}"
            for alias, f in zip(changed, fields[3:], strict=True)
        )
        sql = self._move_statements[key] = (
            f"WITH v ({', '.join(aliases)}) AS (VALUES {', '.join([row] * row_count)})"
            f" UPDATE {table} SET {state} = %s, {assignments} FROM v"
            f" WHERE {table}.{quote(meta.pk.column)} = {cell[pk]}"
            f" AND {table}.{state} IN ({', '.join(['%s'] * from_count)})"
            f" AND {table}.{quote(fields[1].column)} = {cell[attempts]}"
            f" AND {table}.{quote(fields[2].column)} = {cell[claimed_by]}"
            f" RETURNING {table}.{quote(meta.pk.column)}"
        )
        return sql

    def _typed(self, expression: str, field: Any) -> str:
        """`expression` as a value of `field`'s column, where the database needs telling."""
        return expression

    def _move_statement(
        self, model: type[Job], from_count: int, guard: tuple[str, ...], changes: tuple[str, ...]
    ) -> str:
        quote = self.connection.ops.quote_name
        column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
        assignments = ", ".join(f"{column[name]} = %s" for name in ("state", *changes))
        conditions = "".join(f" AND {column[name]} = %s" for name in guard)
        return (
            f"UPDATE {quote(model._meta.db_table)} SET {assignments}"
            f" WHERE {quote(model._meta.pk.column)} = %s"
            f" AND {column['state']} IN ({', '.join(['%s'] * from_count)}){conditions}"
        )

    def _waking(self, update: str) -> str:
        """`update`, made to wake workers too (its last parameter is the payload)."""
        raise NotImplementedError(f"{type(self).__name__} cannot wake workers")

    def _fetch(self, sql: str, params: list) -> list[tuple]:
        """Run one statement of the worker's hot path (a claim, a peek, a batch of outcomes)
        and return its rows: no ORM in between."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def _count(self, sql: str, params: list) -> int:
        """Run one statement and return how many rows it changed."""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def _loader(self, model: type[Job]) -> RowLoader:
        if (loader := self._loaders.get(model)) is None:
            loader = self._loaders[model] = RowLoader(model, self.connection)
        return loader

    def insert_jobs(self, model: type[Job], jobs: list[Job], *, batch_size: int) -> list[Job]:
        """Insert new `jobs` (unsaved instances of `model`), setting their primary keys.

        Django's `bulk_create` here; an engine that can send fewer values overrides it.
        Signals and `save()` do not run, as with `bulk_create`.
        """
        return model._base_manager.db_manager(self.connection.alias).bulk_create(
            jobs, batch_size=batch_size
        )

    def insert_job(self, job: Job, *, wake: str | None = None) -> None:
        """Insert one new job row, setting its primary key, and wake workers with the payload
        `wake` once it commits, where the database can tell them (`wakes_workers`). As with
        `insert_jobs`, `save()` and its signals do not run. Django's `bulk_create` here; an
        engine that can do it in one statement overrides it.
        """
        self.insert_jobs(type(job), [job], batch_size=1)
        if wake is not None and self.wakes_workers:
            self.wake_workers([wake])

    def wake_workers(self, payloads: Iterable[str]) -> None:
        """Tell listening workers that rows became runnable, one notification per payload
        ("<queue> <app_label.Model>", see `jobs.db.wakeup`).

        Nothing to do where workers cannot listen (`can_wake_workers` is False): they poll.
        """

    def prepare_claiming_session(self) -> None:
        """Set this connection up for claims, outside any transaction; nothing by default."""

    def connection_headroom(self) -> tuple[int, str] | None:
        """How many more connections may be opened now and why; None where there is no limit."""
        return None

    def _claim_statement(
        self,
        model: type[Job],
        *,
        queue: str | None,
        worker: str,
        now: datetime,
        limit: int,
        skip: Sequence[str] = (),
    ) -> tuple[str, list]:
        """The claim's text (built once per model and queue filter) and its parameters."""
        changes = claim_changes(now, worker)
        key = ("claim", model, queue is not None, len(skip))
        if (sql := self._move_statements.get(key)) is None:
            sql = self._move_statements[key] = self._claim_text(
                model, queue, tuple(changes), len(skip)
            )
        adapt = self.connection.ops.adapt_datetimefield_value
        values = [adapt(v) if isinstance(v, datetime) else v for v in changes.values()]
        params = [JobState.RUNNING, *values, JobState.PENDING, adapt(now)]
        if queue is not None:
            params.append(queue)
        params += [*skip, limit]
        return sql, params

    def _claim_text(self, model: type[Job], queue: str | None, changes: tuple, skipped: int) -> str:
        quote = self.connection.ops.quote_name
        column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
        pk = quote(model._meta.pk.column)
        queue_filter = _queues_filter(column["queue"], queue is not None, skipped)
        chosen = (
            f"SELECT {pk} FROM {quote(model._meta.db_table)}"
            f" WHERE {column['state']} = %s AND {column['run_at']} <= %s{queue_filter}"
            f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk}"
            f" LIMIT %s{self.row_lock_clause}"
        )
        sets = ", ".join(f"{column[name]} = %s" for name in changes)
        return (
            f"UPDATE {quote(model._meta.db_table)}"
            f" SET {column['state']} = %s, {column['attempts']} = {column['attempts']} + 1,"
            f" {sets}"
            f" WHERE {self._pk_among(pk, chosen)}"
            f" RETURNING {', '.join(column.values())}"
        )

    def _pk_among(self, pk: str, subquery: str) -> str:
        return f"{pk} IN ({subquery})"

    def peek(
        self,
        models: Sequence[type[Job]],
        *,
        queue: str | None,
        now: datetime,
        limit: int,
        skip_queues: Skips = (),
    ) -> list[list[int]]:
        """The priorities of the next `limit` runnable rows of each of `models` (of `queue`,
        else any but the model's `skip_queues`), highest first, one list per model in order.

        What a worker compares to share one claim among several job models by priority
        (`jobs.runtime.claims`). One statement: a part per model, each read from that model's
        pending index in claim order (`_pend`, or `_any` without a queue) and stopped after
        `limit` entries, so its cost grows with the models asked, not with their backlogs.
        It locks nothing: a row seen here may be claimed by another worker before ours.
        """
        quote = self.connection.ops.quote_name
        stamp = self.connection.ops.adapt_datetimefield_value(now)
        parts, params, only = [], [], [queue] if queue is not None else []
        for index, model in enumerate(models):
            column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
            pk = quote(model._meta.pk.column)
            skip = skip_queues[index] if skip_queues else ()
            queue_filter = _queues_filter(column["queue"], queue is not None, len(skip))
            parts.append(
                f"SELECT {index} AS m, p FROM (SELECT {column['priority']} AS p"
                f" FROM {quote(model._meta.db_table)}"
                f" WHERE {column['state']} = %s AND {column['run_at']} <= %s{queue_filter}"
                f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk}"
                f" LIMIT %s) AS h{index}"
            )
            params += [JobState.PENDING, stamp, *only, *skip, limit]
        heads: list[list[int]] = [[] for _ in models]
        for index, priority in self._fetch(" UNION ALL ".join(parts), params):
            heads[index].append(priority)
        for priorities in heads:
            priorities.sort(reverse=True)  # UNION ALL promises no order
        return heads

    def next_due(
        self, models: Sequence[type[Job]], *, queues: Sequence[str] | None, skip_queues: Skips = ()
    ) -> list[datetime | None]:
        """When the earliest pending row of each of `models` becomes runnable (None: it has
        none), for `queues` (all if None) but the model's `skip_queues` (its paused ones);
        one value per model in the order given.

        What an idle worker sleeps until, so a scheduled job starts on time without polling,
        for every model in one statement (each part answered from the model's `_due` index).
        """
        quote = self.connection.ops.quote_name
        parts, params, converters = [], [], []
        for index, model in enumerate(models):
            table = model._meta.db_table
            run_at = model._meta.get_field("run_at")
            state, queue = (
                quote(model._meta.get_field(name).column) for name in ("state", "queue")
            )
            skip = skip_queues[index] if skip_queues else ()
            queue_filter = _queues_filter(queue, len(queues or ()), len(skip))
            parts.append(
                f"SELECT {index} AS m, MIN({quote(run_at.column)}) AS due"
                f" FROM {quote(table)} WHERE {state} = %s{queue_filter}"
            )
            params += [JobState.PENDING, *(queues or []), *skip]
            column = run_at.get_col(table)
            converters.append(
                (
                    column,
                    self.connection.ops.get_db_converters(column)
                    + run_at.get_db_converters(self.connection),
                )
            )
        due: list[datetime | None] = [None for _ in models]
        for index, value in self._fetch(" UNION ALL ".join(parts), params) if parts else []:
            column, found = converters[index]
            for convert in found:
                value = convert(value, column, self.connection)
            due[index] = value
        return due


class RowLoader:
    """Turns claimed rows (every concrete field, in order) into model instances.

    What `Model.objects.raw()` does per query, worked out once per model: which fields
    need a converter (JSON, for instance) and how to apply it. An instance is what
    `Model.from_db()` would build; where that is provably the same (the model keeps
    Django's `from_db` and `__init__`, no `pre_init`/`post_init` receiver listens for it, and
    every field's attribute is Django's plain one), the loader fills the instance's
    `__dict__` directly instead of calling `__init__`'s setattr per field: a claim builds an
    instance per row on the worker's main thread, which every job thread waits on.
    """

    def __init__(self, model: type[Job], connection: BaseDatabaseWrapper) -> None:
        self.model = model
        self.alias = connection.alias
        self.connection = connection
        fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in fields]
        self.converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if found:
                self.converters.append((index, column, found))
        self.direct = (
            getattr(model.from_db, "__func__", None) is Model.from_db.__func__
            and model.__init__ is Model.__init__
            and all(
                type(inspect.getattr_static(model, attname, None)) in PLAIN_ATTRIBUTES
                for attname in self.attnames
            )
        )

    def load(self, rows: Iterable[Sequence]) -> list[Job]:
        """An instance per row, in order."""
        model = self.model
        if not self.direct or pre_init.has_listeners(model) or post_init.has_listeners(model):
            return [self(row) for row in rows]
        attnames, alias, new = self.attnames, self.alias, model.__new__
        loaded = []
        for row in rows:
            job = new(model)
            job._state = state = ModelState()
            state.adding, state.db = False, alias
            job.__dict__.update(zip(attnames, self._converted(row), strict=True))
            loaded.append(job)
        return loaded

    def __call__(self, row: Sequence) -> Job:
        return self.model.from_db(self.alias, self.attnames, self._converted(row))

    def _converted(self, row: Sequence) -> Sequence:
        if not self.converters:
            return row
        values = list(row)
        for index, column, converters in self.converters:
            for convert in converters:
                values[index] = convert(values[index], column, self.connection)
        return values
