"""Moving rows a worker holds: the fenced UPDATEs that record attempts' outcomes.

Every move names the states the row may come from and, for an attempt's outcome, the claim
that fences it (attempt number and claimant), so a late writer cannot overwrite a newer
attempt. A move of many rows is one statement; each engine may say it more cheaply
(`jobs.db.postgresql` sends a batch as one JSON parameter). Moves that end rows return which
of them other jobs wait on (`has_dependents`), for the caller to pass on in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import EmptyResultSet
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from jobs.models import Job


class RowMoves:
    """The moves of `jobs.db.base.Engine`, which binds them to one connection and runs their
    statements (`_fetch`, `_count`)."""

    connection: BaseDatabaseWrapper
    _move_statements: dict[tuple, str]
    wakes_workers: bool
    # Written after the table's name in an UPDATE of rows named by their key, to reach them
    # through the primary key (MariaDB and MySQL: see `jobs.db.mysql.compiler`).
    primary_key_hint = ""

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
        sql, params = self._single_move(job, from_states, to_state, guard, changes, wake=wake)
        return self._count(sql, params) > 0

    def _single_move(
        self,
        job: Job,
        from_states: Collection[str],
        to_state: str,
        guard: dict[str, Any],
        changes: dict[str, Any],
        *,
        wake: str | None = None,
        returning: bool = False,
    ) -> tuple[str, list]:
        """The statement of `move_row` and its parameters; with `returning`, it returns the
        row's `has_dependents` (and wakes no one)."""
        model = type(job)
        wake = wake if self.wakes_workers and not returning else None
        key = (model, len(from_states), tuple(guard), tuple(changes), wake is not None, returning)
        if (sql := self._move_statements.get(key)) is None:
            update = self._move_statement(model, *key[1:4])
            if returning:
                column = model._meta.get_field("has_dependents").column
                update += f" RETURNING {self.connection.ops.quote_name(column)}"
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
        return sql, params

    def move_rows(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        rows: Sequence[tuple[Job, dict[str, Any]]],
    ) -> tuple[list[bool], set[Any]]:
        """Move each `(job, changes)` row of `model` to `to_state`, each only if it is still in
        `from_states` and still the attempt the job holds (`job._claim()`): how a worker
        records a batch of finished attempts, fenced per row exactly as `move_row` is.

        One statement for the batch (the rows must share the keys of `changes`); it wakes no
        worker, so a move back to pending goes through `move_row`. Returns, in order, whether
        each row moved, and the primary keys of the moved rows other jobs wait on
        (`has_dependents`, read from the row as moved: a child that locked the row first is
        seen), whose ending the caller must pass on (`jobs.models.dependency`).

        A single row takes `move_row`'s plain UPDATE by key, where the database checks each
        value against its column as any write does.
        """
        if len(rows) == 1:
            ((job, changes),) = rows
            sql, params = self._single_move(
                job, from_states, to_state, job._claim(), changes, returning=True
            )
            found = self._fetch(sql, params)
            return [bool(found)], {job.pk} if found and found[0][0] else set()
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
        moved = dict(self._move_batch(model, from_states, to_state, names, columns))
        followed = {pk for pk, has_dependents in moved.items() if has_dependents}
        return [job.pk in moved for job, _changes in rows], followed

    def update_returning(
        self, rows: QuerySet, values: dict[str, Any], returning: Sequence[str]
    ) -> list[tuple]:
        """`rows.update(**values)`, returning the `returning` fields of each row it changed:
        what a move that others may wait on needs to know in the same statement (a second
        read could miss a row a concurrent writer changed in between)."""
        query = rows.query.chain(UpdateQuery)
        query.add_update_values(values)
        query.annotations = {}
        query.clear_ordering(force=True)
        try:
            sql, params = query.get_compiler(self.connection.alias).as_sql()
        except EmptyResultSet:  # a filter that matches nothing (`pk__in=[]`)
            return []
        if not sql:
            return []
        meta, quote = rows.model._meta, self.connection.ops.quote_name
        columns = ", ".join(
            quote(meta.pk.column if name == "pk" else meta.get_field(name).column)
            for name in returning
        )
        with self.connection.cursor() as cursor:
            cursor.execute(f"{sql} RETURNING {columns}", params)
            return cursor.fetchall()

    def _move_batch(
        self,
        model: type[Job],
        from_states: Collection[str],
        to_state: str,
        names: tuple[str, ...],
        columns: list[list[Any]],
    ) -> list[tuple]:
        """Run the batch move of `move_rows` on `columns` (see there): each moved row's key
        and `has_dependents`."""
        sql = self._batch_move_statement(model, len(from_states), names, len(columns[0]))
        params = [value for row in zip(*columns, strict=True) for value in row]
        return self._fetch(sql, [*params, to_state, *from_states])

    def _batch_move_statement(
        self, model: type[Job], from_count: int, names: tuple[str, ...], row_count: int
    ) -> str:
        """`WITH v AS (VALUES ...) UPDATE ... FROM v`: per-row values, per-row fence."""
        key = ("batch", model, from_count, names, row_count)
        if (sql := self._move_statements.get(key)) is None:
            fields = batch_fields(model, names)
            aliases = [f"c{index}" for index in range(len(fields))]
            row = f"({', '.join(['%s'] * len(fields))})"
            sql = self._move_statements[key] = (
                f"WITH v ({', '.join(aliases)}) AS (VALUES {', '.join([row] * row_count)}) "
                + self._fenced_update(
                    model,
                    from_count,
                    names,
                    "v",
                    [self._typed(f"v.{a}", f) for a, f in zip(aliases, fields, strict=True)],
                )
            )
        return sql

    def _fenced_update(
        self,
        model: type[Job],
        from_count: int,
        names: tuple[str, ...],
        source: str,
        cells: Sequence[str],
    ) -> str:
        """`UPDATE ... SET state = %s, <names> FROM <source>`, each row only if it is still in
        one of `from_count` states and still its attempt's: what every batch move says.
        `cells` are the expressions reading `batch_fields()` of `source`'s row, in order. It
        returns each moved row's key and `has_dependents`."""
        quote = self.connection.ops.quote_name
        table = quote(model._meta.db_table)
        state = quote(model._meta.get_field("state").column)
        fields = batch_fields(model, names)
        pk, attempts, claimed_by, *changed = cells
        assignments = ", ".join(
            f"{quote(field.column)} = {cell}"
            for field, cell in zip(fields[3:], changed, strict=True)
        )
        return (
            f"UPDATE {table} SET {state} = %s, {assignments} FROM {source}"
            f" WHERE {table}.{quote(fields[0].column)} = {pk}"
            f" AND {table}.{state} IN ({', '.join(['%s'] * from_count)})"
            f" AND {table}.{quote(fields[1].column)} = {attempts}"
            f" AND {table}.{quote(fields[2].column)} = {claimed_by}"
            f" RETURNING {table}.{quote(fields[0].column)},"
            f" {table}.{quote(model._meta.get_field('has_dependents').column)}"
        )

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
            f"UPDATE {quote(model._meta.db_table)}{self.primary_key_hint} SET {assignments}"
            f" WHERE {quote(model._meta.pk.column)} = %s"
            f" AND {column['state']} IN ({', '.join(['%s'] * from_count)}){conditions}"
        )

    def _waking(self, update: str) -> str:
        """`update`, made to wake workers too (its last parameter is the payload)."""
        raise NotImplementedError(f"{type(self).__name__} cannot wake workers")


def batch_fields(model: type[Job], names: Sequence[str]) -> list:
    """The fields a batch move carries per row: the primary key, the claim that fences the
    row (attempt and claimant), then each change."""
    meta = model._meta
    fields = [meta.pk, meta.get_field("attempts"), meta.get_field("claimed_by")]
    return fields + [meta.get_field(name) for name in names]
