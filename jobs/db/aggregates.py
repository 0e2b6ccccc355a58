"""Aggregates the ORM lacks, one spelling per database: `Median`.

PostgreSQL computes a median itself (`percentile_cont`, an ordered-set aggregate). SQLite has
none, so a Python aggregate is registered on each raw connection the first time a query
using it is compiled there. MariaDB and MySQL have a median only as a window function, so
they send each group's values as one JSON array (`JSON_ARRAYAGG`, whose length the
`jobs.db.mysql` backend lifts to the server's maximum) and the median is taken in Python as
the row is read. Every other database is refused with `NotSupportedError` when the query is
compiled, before anything is sent.
"""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

from django.db import NotSupportedError
from django.db.models import Aggregate, FloatField

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

# An ordered-set aggregate: the values sorted, then the one halfway (the mean of the middle two).
POSTGRESQL_MEDIAN = "percentile_cont(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
# The name the SQLite aggregate is registered under: prefixed, so it cannot shadow a
# function the project or another app registers.
SQLITE_MEDIAN = "JOBS_MEDIAN"


class Median(Aggregate):
    """The exact median of a numeric expression, as a float (None over no rows); NULLs are
    left out, as every SQL aggregate leaves them out. Takes `filter=` like Django's own.

    Exact means every value is read and sorted (PostgreSQL sorts them in `work_mem`, SQLite
    holds them in a Python list): fine for the rows of an hour, not for a whole history.
    """

    name = "Median"
    arity = 1
    output_field = FloatField()

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple]:
        raise NotSupportedError(
            "Median() is written for PostgreSQL, SQLite, MariaDB and MySQL, not "
            f"{connection.vendor}: compute the median in Python from the values instead"
        )

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple]:
        # On a copy, not as `template=`: Aggregate.as_sql wraps the template in
        # `... FILTER (WHERE ...)` (after WITHIN GROUP, where PostgreSQL expects it) and
        # passes it on as `template=` itself, so a second one would clash.
        ordered_set = self.copy()
        ordered_set.template = POSTGRESQL_MEDIAN
        return super(Median, ordered_set).as_sql(compiler, connection, **extra_context)

    def as_mysql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple]:
        return super().as_sql(compiler, connection, function="JSON_ARRAYAGG", **extra_context)

    def get_db_converters(self, connection: BaseDatabaseWrapper) -> list:
        converters = super().get_db_converters(connection)
        return [_median_of_array, *converters] if connection.vendor == "mysql" else converters

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, tuple]:
        _register_on(connection)
        return super().as_sql(compiler, connection, function=SQLITE_MEDIAN, **extra_context)


def _median_of_array(value: str | None, expression: Any, connection: Any) -> float | None:
    """The median of a JSON array of values (`as_mysql`); the NULLs a `filter=` left are out."""
    values = [v for v in json.loads(value) if v is not None] if value is not None else []
    return float(statistics.median(values)) if values else None


class _SQLiteMedian:
    """The aggregate SQLite calls: `step` once per row, `finalize` once per group."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return float(statistics.median(self.values)) if self.values else None


def _register_on(connection: BaseDatabaseWrapper) -> None:
    """Register the median on the wrapper's raw connection, once per raw connection.

    A query is compiled just before it runs, on the connection it runs on, so the raw
    connection registered here is the one that executes it. Remembering which raw
    connection was done keeps this to an attribute read on every later compile; a
    reconnection (a new raw connection) registers again.
    """
    connection.ensure_connection()
    raw = connection.connection
    if getattr(connection, "_jobs_median_on", None) is raw:
        return
    raw.create_aggregate(SQLITE_MEDIAN, 1, _SQLiteMedian)
    connection._jobs_median_on = raw
