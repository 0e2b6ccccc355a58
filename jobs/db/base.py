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

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction

from jobs.conf import lease_duration, listen_enabled
from jobs.db.limits import Limits, claim_params, claim_text, limits_of, walk_length
from jobs.db.loading import RowLoader
from jobs.db.moves import RowMoves
from jobs.states import JobState

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from jobs.models import Job


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


def queues_filter(column: str, among: int, skip: int = 0) -> str:
    """The filter keeping rows in `among` queues (none: any) but `skip` (paused) ones."""
    keep = f" AND {column} IN ({', '.join(['%s'] * among)})" if among else ""
    return keep + (f" AND {column} NOT IN ({', '.join(['%s'] * skip)})" if skip else "")


class Engine(RowMoves):
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

        A model with limits (`jobs.db.limits`) is claimed under its claim lock, in rounds:
        one statement each, until `limit` rows are taken or a round takes none (a round
        stops at the room each key has, so the next one may find other keys behind).
        """
        if (limits := limits_of(model)) is not None:
            claimed = self._claim_limited(model, limits, queue, worker, now, limit, skip_queues)
        else:
            claimed = self._claim_unlimited(model, queue, worker, now, limit, skip_queues)
        claimed.sort(key=lambda job: (-job.priority, job.run_at, job.pk))
        return claimed

    def _claim_unlimited(
        self, model: type[Job], queue: str | None, worker: str, now: datetime, limit: int,
        skip: Sequence[str],
    ) -> list[Job]:  # fmt: skip
        """`claim()` for a model without limits: one UPDATE choosing and taking the rows."""
        sql, params = self._claim_statement(
            model, queue=queue, worker=worker, now=now, limit=limit, skip=skip
        )
        return self._loader(model).load(self._fetch(sql, params))

    def lock_claims(self, model: type[Job]) -> None:
        """Make this transaction the only one claiming rows of limited `model` until it ends
        (`jobs.db.limits`). Nothing here: SQLite's single writer is that lock already."""

    def _claim_limited(
        self, model: type[Job], limits: Limits, queue: str | None, worker: str, now: datetime,
        limit: int, skip: Sequence[str],
    ) -> list[Job]:  # fmt: skip
        """`claim()` for a model with limits: rounds under its claim lock (see there). A
        round that took fewer rows than wanted although its walk was full stopped at some
        key's room: the next round's walk leaves that key out and reaches the rows behind."""
        changes = claim_changes(now, worker)
        key = ("limited claim", model, queue is not None, len(skip))
        if (sql := self._move_statements.get(key)) is None:
            column = self.connection.ops.quote_name(model._meta.get_field("queue").column)
            queue_filter = queues_filter(column, queue is not None, len(skip))
            sql = self._move_statements[key] = claim_text(
                self.connection, model, limits, queue_filter, self.row_lock_clause, tuple(changes)
            )
        adapt = self.connection.ops.adapt_datetimefield_value
        values = [adapt(v) if isinstance(v, datetime) else v for v in changes.values()]
        queues = [*([queue] if queue is not None else []), *skip]
        claimed: list[Job] = []
        self.prepare_claiming_session()  # before the transaction, where it can
        with transaction.atomic(using=self.connection.alias, savepoint=False):
            self.lock_claims(model)
            while (wanted := limit - len(claimed)) > 0:
                rows = self._fetch(sql, claim_params(limits, adapt, now, queues, wanted, values))
                claimed += self._loader(model).load([row[:-1] for row in rows])
                if len(rows) == wanted or not rows or rows[0][-1] < walk_length(wanted):
                    break  # all it wanted, or all there was: no key was cut short
        return claimed

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
        queue_filter = queues_filter(column["queue"], queue is not None, skipped)
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
            queue_filter = queues_filter(column["queue"], queue is not None, len(skip))
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
            queue_filter = queues_filter(queue, len(queues or ()), len(skip))
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
