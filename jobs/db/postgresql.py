"""PostgreSQL: claims skip rows other workers hold, and idle workers are woken by NOTIFY.

`FOR UPDATE SKIP LOCKED` in the inner SELECT means concurrent workers each take different
rows instead of queueing behind one lock. A row another worker claimed and committed after
this statement's snapshot is re-read when locked and, no longer pending, is left out (READ
COMMITTED's recheck of a locked row), so the rows the UPDATE gets are pending and ours.
`= ANY(ARRAY(...))` makes PostgreSQL run the inner SELECT once, as a list of ids, rather than
plan it as a join against the table.

The wake-up is a hint, never an instruction: a notification names a queue and a job model
(`jobs.db.wakeup`), and a woken worker claims through the same statement as a polling one.
A lost notification costs at most one poll interval.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import math
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from jobs.conf import network_timeout, transaction_pooling
from jobs.db.base import Engine
from jobs.db.moves import batch_fields
from jobs.db.network import server_settings

if TYPE_CHECKING:
    import psycopg
    from django.db.models import Field

    from jobs.models import Job

CHANNEL = "jobs_wakeup"
# The first key of the claim locks of limited job models (`lock_claims`); the second is the
# table's oid. Other advisory lock users of the database stay clear of this space.
CLAIM_LOCK_SPACE = 0x6A6F6273  # "jobs"
# Values that are the same column value whenever they are equal and of the same type; a
# column holding one of them in every row of a bulk insert is sent once, not once per row.
# (Containers are not: [1] == [True], yet they are different JSON.)
FOLDABLE_TYPES = frozenset(
    {
        str,
        int,
        float,
        bool,
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        type(None),
    }
)
# The keys of a batch move's JSON rows (`_move_batch`): short, and one per column moved.
JSON_KEYS = tuple(f"c{index}" for index in range(64))
HEADROOM_QUERY = """
SELECT current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
       (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user),
       (SELECT datconnlimit FROM pg_database WHERE datname = current_database()),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
"""


class _NotJSON(Exception):
    """A batch value JSON cannot carry as itself."""


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int):  # booleans too
        return value
    if isinstance(value, float) and math.isfinite(value):  # JSON has no NaN or Infinity
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise _NotJSON


class PostgreSQLEngine(Engine):
    row_lock_clause = " FOR UPDATE SKIP LOCKED"
    can_wake_workers = True

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self._listening_on = None  # the driver connection LISTEN was issued on
        self._tuned = None  # the driver connection the claim's planner setting was made on
        self._cursor_on = None  # the driver connection `_reused` belongs to
        self._reused = None
        self._encoded: dict[str, bytes] = {}  # each prepared statement's text, encoded once

    def wake_workers(self, payloads: Iterable[str]) -> None:
        """One NOTIFY per payload, in one statement; in a transaction, delivered at commit."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                [CHANNEL, sorted(set(payloads))],
            )

    def notifications(self, timeout: float) -> list[str]:
        """Wait up to `timeout` seconds for wake-ups; returns their payloads (may be none).

        Listens first if this connection is new (the first call, or after a reconnect).
        Returns as soon as one arrives, with any others already received.
        """
        self.connection.ensure_connection()
        driver_connection = self.connection.connection
        if driver_connection is not self._listening_on:
            with self.connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self._listening_on = driver_connection
        with self.connection.wrap_database_errors:
            first = list(driver_connection.notifies(timeout=timeout, stop_after=1))
            rest = list(driver_connection.notifies(timeout=0)) if first else []
        return [notification.payload for notification in first + rest]

    def insert_jobs(self, model: type[Job], jobs: list[Job], *, batch_size: int) -> list[Job]:
        """Insert `jobs` sending each column that is the same in every row once.

        Most of a job row is lifecycle (state, times, queue, empty error fields), identical
        across a bulk enqueue, so of twenty columns typically one or two differ per row:
        those go as arrays through UNNEST, the rest as single values. Anything Django's
        `bulk_create` would handle specially (a primary key given, database defaults,
        expressions, custom placeholders) goes through `bulk_create`.
        """
        meta = model._meta
        fields = [field for field in meta.concrete_fields if field is not meta.pk]
        for job in jobs:
            job._prepare_related_fields_for_save(operation_name="bulk_enqueue")
        columns = [[field.pre_save(job, True) for job in jobs] for field in fields]
        if not self._can_unnest(meta.pk, fields, jobs, columns):
            return super().insert_jobs(model, jobs, batch_size=batch_size)
        quote = self.connection.ops.quote_name
        for start in range(0, len(jobs), batch_size):
            batch = slice(start, start + batch_size)
            sql, params = self._insert_statement(fields, [values[batch] for values in columns])
            sql = (
                f"INSERT INTO {quote(meta.db_table)}"
                f" ({', '.join(quote(field.column) for field in fields)})"
                f" {sql} RETURNING {quote(meta.pk.column)}"
            )
            with self._prepared(sql, params, prepare=False) as cursor:
                for job, (pk,) in zip(jobs[batch], cursor.fetchall(), strict=True):
                    job.pk = pk
                    job._state.adding = False
                    job._state.db = self.connection.alias
        return jobs

    def insert_job(self, job: Job, *, wake: str | None = None) -> None:
        """One prepared statement: the INSERT and, in the same statement, its NOTIFY
        (delivered when the transaction commits, like every NOTIFY)."""
        model, meta = type(job), job._meta
        fields = [field for field in meta.concrete_fields if field is not meta.pk]
        job._prepare_related_fields_for_save(operation_name="enqueue")
        values = [field.pre_save(job, True) for field in fields]
        if not self._can_unnest(meta.pk, fields, [job], [[value] for value in values]):
            super().insert_job(job, wake=wake)
            return
        waking = wake is not None and self.wakes_workers
        key = ("insert", model, waking)
        if (sql := self._move_statements.get(key)) is None:
            quote = self.connection.ops.quote_name
            sql = (
                f"INSERT INTO {quote(meta.db_table)}"
                f" ({', '.join(quote(field.column) for field in fields)})"
                f" VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(meta.pk.column)}"
            )
            if waking:
                sql = f"WITH inserted AS ({sql}) SELECT *, pg_notify('{CHANNEL}', %s) FROM inserted"
            self._move_statements[key] = sql
        params = [
            field.get_db_prep_save(value, self.connection)
            for field, value in zip(fields, values, strict=True)
        ]
        if waking:
            params.append(wake)
        with self._prepared(sql, params) as cursor:
            job.pk = cursor.fetchone()[0]
        job._state.adding = False
        job._state.db = self.connection.alias

    def _can_unnest(self, pk: Field, fields: list[Field], jobs: list[Job], columns: list) -> bool:
        """What Django's own UNNEST insert accepts, with the primary key left to the database."""
        data_types = self.connection.data_types
        return (
            pk.db_returning
            and all(job.pk is None for job in jobs)
            and not any(hasattr(field, "get_placeholder") for field in fields)
            and all(
                (field.target_field if field.is_relation else field).get_internal_type()
                in data_types
                for field in fields
            )
            and not any(hasattr(value, "as_sql") for values in columns for value in values)
        )

    def _insert_statement(self, fields: list[Field], columns: list[list]) -> tuple[str, list]:
        """`SELECT ... FROM UNNEST(...)`: a value per column, or an array per varying one."""
        selected, constants, arrays, array_params = [], [], [], []
        for field, values in zip(fields, columns, strict=True):
            db_type = field.db_type(self.connection).split("(")[0]  # varchar, not varchar(n)
            first = values[0]
            if type(first) in FOLDABLE_TYPES and all(
                type(value) is type(first) and value == first for value in values
            ):
                selected.append(f"%s::{db_type}")
                constants.append(field.get_db_prep_save(first, self.connection))
            else:
                selected.append(f"u.c{len(arrays)}")
                arrays.append(f"%s::{db_type}[]")
                array_params.append(
                    [field.get_db_prep_save(value, self.connection) for value in values]
                )
        if arrays:
            names = ", ".join(f"c{index}" for index in range(len(arrays)))
            source = f"UNNEST({', '.join(arrays)}) AS u({names})"
        else:
            source, array_params = "generate_series(1, %s)", [len(columns[0])]
        return f"SELECT {', '.join(selected)} FROM {source}", constants + array_params

    def connection_headroom(self) -> tuple[int, str]:
        """How many more connections the server lets this role open now, and why that many.

        The least of the server's free slots (`max_connections` less the superuser reserve
        and the connections open now), the role's `CONNECTION LIMIT` and the database's.
        """
        with self.connection.cursor() as cursor:
            cursor.execute(HEADROOM_QUERY)
            server, reserved, open_now, role_limit, role_open, db_limit, db_open = cursor.fetchone()
        limits = [
            (
                server - reserved - open_now,
                f"max_connections {server}, {reserved} reserved for superusers, {open_now} open",
            )
        ]
        if role_limit >= 0:
            limits.append((role_limit - role_open, f"role limit {role_limit}, {role_open} open"))
        if db_limit >= 0:
            limits.append((db_limit - db_open, f"database limit {db_limit}, {db_open} open"))
        return min(limits)

    def lock_claims(self, model: type[Job]) -> None:
        """A transaction-level advisory lock per job table: released at commit, so nothing is
        held across transactions (safe behind a transaction-mode pooler)."""
        self._fetch(
            "SELECT pg_advisory_xact_lock(%s, %s::regclass::oid::int)",
            [CLAIM_LOCK_SPACE, self.connection.ops.quote_name(model._meta.db_table)],
        )

    def prepare_claiming_session(self) -> None:
        """Make this connection's planner read pending indexes in order, never sort them.

        The claim must walk a pending index in claim order (`_pend`, `_any`) and stop after
        k rows. A planner whose statistics predate a backlog (a table of a million finished
        rows is analysed again only after 100,000 changes) believes there is about one
        pending row, reads the small `_due` index instead and sorts the whole backlog on
        every claim: 0.25 ms became 30 ms with 100,000 pending rows. With sorting priced out
        on the claiming session, it takes the ordered index whatever the statistics say;
        only the claim of a limited model sorts, a few rows, and has no other plan. Made
        outside any transaction, whose rollback would undo it; once per connection.

        JIT compilation is turned off with it: a sort the claim of a limited model cannot do
        without (`jobs.db.limits`) is priced at the planner's "disabled" cost, far above
        `jit_above_cost`, and PostgreSQL then spent 0.8 s compiling a statement that runs in
        0.2 ms. No statement of the hot path is big enough for JIT to pay.

        With `JOBS_NETWORK_TIMEOUT`, the server also ends this session if it idles inside a
        transaction, or its client goes silent, for that long (`jobs.db.network`): a worker
        cut off mid-transaction must not hold its locks for hours.

        Behind a pooler in transaction mode (`JOBS_TRANSACTION_POOLING`) the next transaction
        may run in another client's session, so nothing is set: give the workers' role these
        settings instead (`ALTER ROLE ... SET`, docs/databases.md).
        """
        if transaction_pooling():  # a session is not ours to set (docs/databases.md)
            return
        self.connection.ensure_connection()
        if self.connection.connection is not self._tuned and not self.connection.in_atomic_block:
            settings = "SET enable_sort = off; SET jit = off"
            if (seconds := network_timeout()) is not None:
                settings += "; " + server_settings(seconds)
            with self.connection.cursor() as cursor:
                cursor.execute(settings)
            self._tuned = self.connection.connection

    def _fetch(self, sql: str, params: list) -> list[tuple]:
        """Run a hot-path statement, prepared where the connection allows it, on a session
        set for claims (a no-op check once the connection is set, or inside a transaction).

        Prepared: bound on the client, as Django does by default, every claim would be
        parsed and planned again, and on a table with several indexes planning costs more
        than running.
        """
        self.prepare_claiming_session()
        with self._prepared(sql, params) as cursor:
            return cursor.fetchall()

    def _move_batch(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        names: tuple[str, ...],
        columns: list[list[Any]],
    ) -> list[tuple]:
        """`UPDATE ... FROM json_to_recordset(%s)`: the batch as one JSON parameter, so one
        text and one prepared statement serve a batch of any size.

        Per-row VALUES (the base statement) are a statement per batch size with a parameter
        per value, and past 50 parameters psycopg splits the text again on every call: a
        no-op drain spent a fifth of its worker's main thread building and binding them.
        (Arrays through UNNEST cost more still: psycopg dumps a list element by element in
        Python.) JSON is encoded in C; PostgreSQL reads each value with its column's own
        input function. A batch holding a value JSON cannot carry as such (anything but
        text, numbers, booleans, None and datetimes), or more columns than `JSON_KEYS`
        names, takes the base statement.
        """
        if len(columns) > len(JSON_KEYS):
            return super()._move_batch(model, from_states, to_state, names, columns)
        try:
            rows = [
                dict(zip(JSON_KEYS, map(_json_value, row), strict=False))
                for row in zip(*columns, strict=True)
            ]
        except _NotJSON:
            return super()._move_batch(model, from_states, to_state, names, columns)
        key = ("json batch", model, len(from_states), names)
        if (sql := self._move_statements.get(key)) is None:
            sql = self._move_statements[key] = self._json_move_statement(
                model, len(from_states), names
            )
        return self._fetch(sql, [to_state, json.dumps(rows), *from_states])

    def _json_move_statement(
        self, model: type[Job], from_count: int, names: tuple[str, ...]
    ) -> str:
        fields = batch_fields(model, names)
        aliases = JSON_KEYS[: len(fields)]
        record = ", ".join(
            f"{alias} {field.cast_db_type(self.connection)}"
            for alias, field in zip(aliases, fields, strict=True)
        )
        source = f"json_to_recordset(%s::json) AS v ({record})"
        return self._fenced_update(
            model, from_count, names, source, [f"v.{alias}" for alias in aliases]
        )

    def _typed(self, expression: str, field: Field) -> str:
        """A cast: the values of a VALUES list have no column type of their own, and one
        that is NULL in every row would otherwise be text."""
        return f"CAST({expression} AS {field.cast_db_type(self.connection)})"

    def _count(self, sql: str, params: list) -> int:
        with self._prepared(sql, params) as cursor:
            return cursor.rowcount

    @contextlib.contextmanager
    def _prepared(
        self, sql: str, params: list, *, prepare: bool = True
    ) -> Iterator[psycopg.Cursor]:
        """A cursor that has run `sql` with its parameters bound on the server.

        Prepared (parsed and planned once per connection) where the connection allows it:
        Django leaves preparing off unless `DATABASES[...]["OPTIONS"]["prepare_threshold"]`
        is set, since a transaction-mode pooler may hand each statement to another session.
        """
        self.connection.ensure_connection()
        began = time.monotonic()
        with self.connection.wrap_database_errors:
            cursor = self._cursor()
            text: str | bytes = sql
            if prepare and (text := self._encoded.get(sql)) is None:
                # The same bytes each time: psycopg then finds its parsed form and its
                # prepared statement without encoding and hashing the text again.
                text = self._encoded[sql] = sql.encode(cursor.connection.info.encoding)
            cursor.execute(text, params, prepare=prepare)
            if self.connection.queries_logged:  # DEBUG, or a test counting statements
                # Shown where Django shows its own statements (`connection.queries`), as its
                # debug cursor would: the framework's raw statements are not hidden from tools.
                seconds = time.monotonic() - began
                self.connection.queries_log.append({"sql": sql, "time": f"{seconds:.3f}"})
            yield cursor

    def _cursor(self) -> psycopg.Cursor:
        """This connection's cursor for the framework's own statements, made once.

        One cursor serves every statement in turn (each caller reads its rows before the
        next statement runs; an engine belongs to one thread), so a claim does not pay for
        a new cursor and its adapters each time. It loads `timestamptz` with
        `_fast_timestamp_loader` where that gives the same values as Django's loader.
        """
        import psycopg  # here, not at the top: a project on SQLite need not install it

        driver = self.connection.connection
        if self._cursor_on is not driver or self._reused.closed:
            cursor = psycopg.Cursor(driver)
            if (loader := self._fast_timestamp_loader()) is not None:
                cursor.adapters.register_loader("timestamptz", loader)
            self._reused, self._cursor_on = cursor, driver
            self._encoded.clear()  # the new connection's encoding may differ
        return self._reused

    def _fast_timestamp_loader(self) -> type | None:
        """psycopg's own timestamptz loader where it returns what Django's would, else None.

        Django loads `timestamptz` through a Python subclass of psycopg's loader that sets
        the connection's time zone on each value; psycopg's own (in C, with the binary
        package) gives each value the session's time zone. Where those are the same zone
        (Django sets the session's to the connection's when it connects) the values are the
        same, and a claim's rows load several times faster: parsing timestamps in Python
        was a third of the claim's time on the worker's main thread.
        """
        import psycopg

        tz = self.connection.timezone
        if tz is None or self.connection.connection.info.timezone != tz:
            return None
        oid = psycopg.adapters.types["timestamptz"].oid
        return psycopg.adapters.get_loader(oid, psycopg.pq.Format.TEXT)

    def _waking(self, update: str) -> str:
        """The move and its NOTIFY in one statement: one round trip, delivered at commit.

        PostgreSQL sends a transaction's identical notifications once, so a transaction
        that moves many rows of one queue still wakes its workers once.
        """
        return f"WITH moved AS ({update} RETURNING 1) SELECT pg_notify('{CHANNEL}', %s) FROM moved"

    def _pk_among(self, pk: str, subquery: str) -> str:
        return f"{pk} = ANY(ARRAY({subquery}))"
