"""MariaDB and MySQL: claims and fenced moves without `UPDATE ... RETURNING`.

Neither database returns rows from an UPDATE, nor lets an UPDATE read a CTE or a LIMITed
subquery of its own table. So a claim is a transaction of two statements: a SELECT of the
runnable rows `FOR UPDATE SKIP LOCKED` (concurrent workers skip each other's rows, as on
PostgreSQL; READ COMMITTED reads the latest committed version of each row it locks), then
an UPDATE of those rows by primary key. The rows come back as read and then changed in
Python, exactly as the UPDATE changed them, so the claim costs no third read. A batch of
outcomes likewise locks its rows, checks each one's fence (state, attempt, claimant) on
the locked row, and updates the ones that pass in one statement.

A limited model's claims queue on a row lock of their own (`lock_claims`): MariaDB and
MySQL have advisory locks only per session (`GET_LOCK`), which a rollback would not
release, so the lock is a row of `jobs_claimlock`, held until the transaction ends.

Nothing here can wake a worker: idle workers poll every `--interval`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet

from jobs.conf import network_timeout
from jobs.db.base import Engine, claim_changes, queues_filter
from jobs.db.limits import SLOT_FIELD, Limits, choice_params, choice_text, walk_length
from jobs.db.moves import batch_fields
from jobs.db.mysql.compiler import BY_PRIMARY_KEY
from jobs.errors import ConfigurationError
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models import Job

# Where limited models' claim locks are rows (see the module's docstring; `jobs.models`
# makes the table on every database, only this engine writes it).
CLAIM_LOCK_TABLE = "jobs_claimlock"


class MySQLEngine(Engine):
    row_lock_clause = " FOR UPDATE SKIP LOCKED"
    primary_key_hint = f" {BY_PRIMARY_KEY}"

    def __init__(self, connection: Any) -> None:
        # Here, not at the top: the backend imports the driver (mysqlclient), which projects
        # on other databases need not install; a connection of this vendor has it loaded.
        from jobs.db.mysql.base import MINIMUM_MARIADB, MINIMUM_MYSQL, DatabaseWrapper

        if not isinstance(connection, DatabaseWrapper):
            raise ConfigurationError(
                f"database {connection.alias!r} uses Django's MySQL backend; set its ENGINE to "
                "'jobs.db.mysql', which gives job tables the partial indexes and unique "
                "constraints MariaDB and MySQL cannot hold themselves (docs/databases.md)"
            )
        version = connection.mysql_version
        name, minimum = (
            ("MariaDB", MINIMUM_MARIADB)
            if connection.mysql_is_mariadb
            else ("MySQL", MINIMUM_MYSQL)
        )
        if version < minimum:
            raise ConfigurationError(
                f"{name} {'.'.join(map(str, version))} is too old: jobs needs "
                f"{'.'.join(map(str, minimum))} or newer (FOR UPDATE SKIP LOCKED)"
            )
        super().__init__(connection)
        self._session_set_on = None  # the driver connection `prepare_claiming_session` set

    def _claim_unlimited(
        self, model: type[Job], queue: str | None, worker: str, now: datetime, limit: int,
        skip: Sequence[str],
    ) -> list[Job]:  # fmt: skip
        """`claim()` for a model without limits: the next runnable rows that no one else
        holds, locked and taken in one transaction (see the module's docstring)."""
        changes = claim_changes(now, worker)
        key = ("claim", model, queue is not None, len(skip))
        if (sql := self._move_statements.get(key)) is None:
            sql = self._move_statements[key] = self._runnable_text(model, queue, len(skip))
        adapt = self.connection.ops.adapt_datetimefield_value
        params = [JobState.PENDING, adapt(now), *([queue] if queue is not None else []), *skip]
        self.prepare_claiming_session()
        with transaction.atomic(using=self.connection.alias, savepoint=False):
            rows = self._fetch(sql, [*params, limit])
            if rows:
                pk = self._pk_index(model)
                self._take(model, [row[pk] for row in rows], changes, {})
        return self._claimed(model, rows, changes, {})

    def _claim_limited(
        self, model: type[Job], limits: Limits, queue: str | None, worker: str, now: datetime,
        limit: int, skip: Sequence[str],
    ) -> list[Job]:  # fmt: skip
        """Rounds as on the other databases (`Engine._claim_limited`), each a choice by
        `choice_text` under the claim lock, then the chosen rows that are still pending and
        free locked and taken."""
        changes = claim_changes(now, worker)
        key = ("limited choice", model, queue is not None, len(skip))
        if (sql := self._move_statements.get(key)) is None:
            column = self.connection.ops.quote_name(model._meta.get_field("queue").column)
            queue_filter = queues_filter(column, queue is not None, len(skip))
            sql = self._move_statements[key] = choice_text(
                self.connection, model, limits, queue_filter
            )
        adapt = self.connection.ops.adapt_datetimefield_value
        queues = [*([queue] if queue is not None else []), *skip]
        claimed: list[Job] = []
        self.prepare_claiming_session()
        with transaction.atomic(using=self.connection.alias, savepoint=False):
            self.lock_claims(model)
            while (wanted := limit - len(claimed)) > 0:
                chosen = self._fetch(sql, choice_params(limits, adapt, now, queues, wanted))
                slots = {pk: slot for pk, slot, _walked in chosen if slot is not None}
                rows = self._lock_pending(model, [pk for pk, _slot, _walked in chosen])
                if rows:
                    pk = self._pk_index(model)
                    pks = [row[pk] for row in rows]
                    self._take(model, pks, changes, slots)
                    claimed += self._claimed(model, rows, changes, slots)
                if len(chosen) == wanted or not chosen or chosen[0][-1] < walk_length(wanted):
                    break
        return claimed

    def lock_claims(self, model: type[Job]) -> None:
        """The claim lock of `model`: its row of `jobs_claimlock`, written (made if new) and so
        held until this transaction ends, whether it commits or rolls back."""
        quote = self.connection.ops.quote_name
        self._count(
            f"INSERT INTO {quote(CLAIM_LOCK_TABLE)} (name) VALUES (%s)"
            " ON DUPLICATE KEY UPDATE name = name",
            [model._meta.db_table],
        )

    def _runnable_text(self, model: type[Job], queue: str | None, skipped: int) -> str:
        """SELECT every column of the next runnable rows, locking them and skipping locked ones."""
        quote = self.connection.ops.quote_name
        column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
        pk = quote(model._meta.pk.column)
        queue_filter = queues_filter(column["queue"], queue is not None, skipped)
        return (
            f"SELECT {', '.join(column.values())} FROM {quote(model._meta.db_table)}"
            f" WHERE {column['state']} = %s AND {column['run_at']} <= %s{queue_filter}"
            f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk}"
            f" LIMIT %s{self.row_lock_clause}"
        )

    def _lock_pending(self, model: type[Job], pks: list[Any]) -> list[tuple]:
        """Every column of the rows of `pks` still pending, locked until the transaction ends,
        in claim order. A row another transaction holds is skipped, not waited for: `run()`
        locks its row before the claim lock, so waiting here, under the claim lock, could
        deadlock with it."""
        if not pks:
            return []
        quote = self.connection.ops.quote_name
        column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
        pk = quote(model._meta.pk.column)
        return self._fetch(
            f"SELECT {', '.join(column.values())} FROM {quote(model._meta.db_table)}"
            f" WHERE {pk} IN ({', '.join(['%s'] * len(pks))}) AND {column['state']} = %s"
            f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk}{self.row_lock_clause}",
            [*pks, JobState.PENDING],
        )

    def _take(
        self, model: type[Job], pks: list[Any], changes: dict[str, Any], slots: dict[Any, int]
    ) -> None:
        """Mark the locked rows of `pks` running: the claim's UPDATE, with each row's slot."""
        quote = self.connection.ops.quote_name
        meta = model._meta
        column = {field.name: quote(field.column) for field in meta.concrete_fields}
        pk = quote(meta.pk.column)
        adapt = self.connection.ops.adapt_datetimefield_value
        sets = [f"{column[name]} = %s" for name in changes]
        params = [adapt(v) if isinstance(v, datetime) else v for v in changes.values()]
        if slots:
            cases = " ".join(["WHEN %s THEN %s"] * len(slots))
            sets.append(f"{column[SLOT_FIELD]} = CASE {pk} {cases} END")
            params += [value for item in slots.items() for value in item]
        self._count(
            f"UPDATE {quote(meta.db_table)}{self.primary_key_hint} SET {column['state']} = %s,"
            f" {column['attempts']} = {column['attempts']} + 1, {', '.join(sets)}"
            f" WHERE {pk} IN ({', '.join(['%s'] * len(pks))})",
            [JobState.RUNNING, *params, *pks],
        )

    def _claimed(
        self, model: type[Job], rows: list[tuple], changes: dict[str, Any], slots: dict[Any, int]
    ) -> list[Job]:
        """The instances of `rows` as read before `_take`, changed as it changed them."""
        jobs = self._loader(model).load(rows)
        for job in jobs:
            job.state = JobState.RUNNING.value  # a str, as Django loads it
            job.attempts += 1
            for name, value in changes.items():
                setattr(job, name, value)
            if job.pk in slots:
                setattr(job, SLOT_FIELD, slots[job.pk])
        return jobs

    def _pk_index(self, model: type[Job]) -> int:
        return model._meta.concrete_fields.index(model._meta.pk)

    def move_rows(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        rows: Sequence[tuple[Job, dict[str, Any]]],
    ) -> tuple[list[bool], set[Any]]:
        """`RowMoves.move_rows`: the rows locked and their fences checked on the locked rows,
        then one UPDATE of those that pass, fenced again in its WHERE."""
        meta, quote = model._meta, self.connection.ops.quote_name
        names = ("pk", "state", "attempts", "claimed_by", "has_dependents")
        columns = [quote(meta.pk.column if n == "pk" else meta.get_field(n).column) for n in names]
        pks = [job.pk for job, _changes in rows]
        with transaction.atomic(using=self.connection.alias, savepoint=False):
            held = {
                row[0]: row[1:]
                for row in self._fetch(
                    f"SELECT {', '.join(columns)} FROM {quote(meta.db_table)}"
                    f" WHERE {columns[0]} IN ({', '.join(['%s'] * len(pks))}) FOR UPDATE",
                    pks,
                )
            }
            passing = [
                (job, changes)
                for job, changes in rows
                if (row := held.get(job.pk)) is not None
                and row[0] in from_states
                and (row[1], row[2]) == (job.attempts, job.claimed_by)
            ]
            if len(passing) == 1:
                ((job, changes),) = passing
                self.move_row(job, from_states, to_state, guard=job._claim(), changes=changes)
            elif passing:
                self._count(*self._joined_move(model, from_states, to_state, passing))
        moved = {job.pk for job, _changes in passing}
        followed = {pk for pk in moved if held[pk][3]}
        return [job.pk in moved for job, _changes in rows], followed

    def _joined_move(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        rows: Sequence[tuple[Job, dict[str, Any]]],
    ) -> tuple[str, list]:
        """`UPDATE t JOIN (SELECT ... UNION ALL SELECT ...) v`: per-row values, per-row fence."""
        names = tuple(rows[0][1])
        fields = batch_fields(model, names)
        quote = self.connection.ops.quote_name
        table = quote(model._meta.db_table)
        aliases = [f"c{index}" for index in range(len(fields))]
        first = ", ".join(f"%s AS {alias}" for alias in aliases)
        rest = ", ".join(["%s"] * len(fields))
        source = " UNION ALL ".join([f"SELECT {first}"] + [f"SELECT {rest}"] * (len(rows) - 1))
        params: list = []
        for job, changes in rows:
            claim = job._claim()
            params += [
                job.pk,
                fields[1].get_db_prep_value(claim["attempts"], self.connection),
                fields[2].get_db_prep_value(claim["claimed_by"], self.connection),
            ]
            params += [
                field.get_db_prep_save(changes[field.name], self.connection) for field in fields[3:]
            ]
        state = quote(model._meta.get_field("state").column)
        assignments = ", ".join(
            f"{table}.{quote(field.column)} = v.{alias}"
            for field, alias in zip(fields[3:], aliases[3:], strict=True)
        )
        sql = (
            f"UPDATE {table}{self.primary_key_hint} JOIN ({source}) AS v"
            f" ON {table}.{quote(fields[0].column)} = v.c0"
            f" SET {table}.{state} = %s, {assignments}"
            f" WHERE {table}.{state} IN ({', '.join(['%s'] * len(from_states))})"
            f" AND {table}.{quote(fields[1].column)} = v.c1"
            f" AND {table}.{quote(fields[2].column)} = v.c2"
        )
        return sql, [*params, to_state, *from_states]

    def update_returning(
        self, rows: QuerySet, values: dict[str, Any], returning: Sequence[str]
    ) -> list[tuple]:
        """`RowMoves.update_returning` in two statements: the rows locked and read, then
        updated by primary key (still matching, since they are locked)."""
        with transaction.atomic(using=self.connection.alias, savepoint=False):
            found = list(rows.select_for_update().values_list("pk", *returning))
            if found:
                rows.model._base_manager.using(self.connection.alias).filter(
                    pk__in=[row[0] for row in found]
                ).update(**values)
        return [row[1:] for row in found]

    def insert_jobs(self, model: type[Job], jobs: list[Job], *, batch_size: int) -> list[Job]:
        """`bulk_create` where it sets primary keys (MariaDB 10.5 and newer return them);
        on MySQL, one INSERT per row, whose key the driver reports."""
        if self.connection.features.can_return_rows_from_bulk_insert:
            return super().insert_jobs(model, jobs, batch_size=batch_size)
        for job in jobs:
            job.save_base(raw=True, force_insert=True, using=self.connection.alias)
        return jobs

    def insert_job(self, job: Job, *, wake: str | None = None) -> None:
        """One INSERT in the caller's transaction or on its own, its key from the driver:
        Django's `bulk_create` wraps even one row in a transaction of its own, which here
        costs two more round trips (autocommit off, then on). Anything `bulk_create` handles
        specially (a primary key given, database defaults, expressions) goes through it. No
        one to wake: workers poll."""
        meta = job._meta
        fields = [field for field in meta.concrete_fields if field is not meta.pk]
        job._prepare_related_fields_for_save(operation_name="enqueue")
        values = [field.pre_save(job, True) for field in fields]
        if (
            job.pk is not None
            or not meta.pk.db_returning
            or any(hasattr(field, "get_placeholder") for field in fields)
            or any(hasattr(value, "as_sql") for value in values)
        ):
            super().insert_job(job, wake=wake)
            return
        key = ("insert", type(job))
        if (sql := self._move_statements.get(key)) is None:
            quote = self.connection.ops.quote_name
            sql = self._move_statements[key] = (
                f"INSERT INTO {quote(meta.db_table)}"
                f" ({', '.join(quote(field.column) for field in fields)})"
                f" VALUES ({', '.join(['%s'] * len(fields))})"
            )
        params = [
            field.get_db_prep_save(value, self.connection)
            for field, value in zip(fields, values, strict=True)
        ]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            job.pk = cursor.lastrowid
        job._state.adding = False
        job._state.db = self.connection.alias

    def prepare_claiming_session(self) -> None:
        """With `JOBS_NETWORK_TIMEOUT`, MariaDB ends this session if it idles inside a
        transaction that long (`idle_transaction_timeout`; MySQL has no such setting), so a
        worker cut off mid-claim does not hold its rows' locks for the server's
        `wait_timeout` (8 hours by default). Once per connection, outside a transaction."""
        seconds = network_timeout()
        if seconds is None or not self.connection.mysql_is_mariadb:
            return
        self.connection.ensure_connection()
        if (
            self.connection.connection is not self._session_set_on
            and not self.connection.in_atomic_block
        ):
            with self.connection.cursor() as cursor:
                cursor.execute(f"SET SESSION idle_transaction_timeout = {max(1, round(seconds))}")
            self._session_set_on = self.connection.connection

    def connection_headroom(self) -> tuple[int, str]:
        """How many more connections the server lets this user open now, and why that many:
        the least of `max_connections` less those open, and `max_user_connections` (0: none)
        less this user's."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT @@max_connections, @@max_user_connections,"
                " (SELECT COUNT(*) FROM information_schema.PROCESSLIST),"
                " (SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                "  WHERE user = SUBSTRING_INDEX(CURRENT_USER(), '@', 1))"
            )
            server, user_limit, open_now, user_open = cursor.fetchone()
        limits = [(server - open_now, f"max_connections {server}, {open_now} open")]
        if user_limit:
            limits.append(
                (user_limit - user_open, f"max_user_connections {user_limit}, {user_open} open")
            )
        return min(limits)
