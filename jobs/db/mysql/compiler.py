"""Django's MySQL compilers, with one change: a job table's `UPDATE` of rows named by their
primary key goes through the primary key, whatever the optimizer would choose (the engine's
own statements by key do the same, `jobs.db.mysql.engine`).

Why: InnoDB locks index entries in the order its plan reads them. A renewal (or a claim, or
an outcome) locks the row through the primary key and then the entries of the `state`-led
indexes whose columns it changes; with a single running row in the table, MariaDB plans
`UPDATE ... WHERE id = 1 AND state = 'running' AND ...` (a job saving its cursor or its
progress) through the `state`-led index instead, taking that entry first and the row second.
Two such statements at once wait for each other, and InnoDB kills one of them: the job's
write. Through the primary key, every statement that names its rows takes the row first.
"""

from __future__ import annotations

from django.db.backends.mysql import compiler
from django.db.models import Model
from django.db.models.lookups import Exact, In
from django.db.models.sql.where import AND

from jobs.db.mysql.schema import has_state_indexes

# The index hint; `jobs.db.mysql.engine` writes it into its own UPDATEs by key.
BY_PRIMARY_KEY = "FORCE INDEX (PRIMARY)"

SQLCompiler = compiler.SQLCompiler
SQLInsertCompiler = compiler.SQLInsertCompiler
SQLDeleteCompiler = compiler.SQLDeleteCompiler
SQLAggregateCompiler = compiler.SQLAggregateCompiler


class SQLUpdateCompiler(compiler.SQLUpdateCompiler):
    def as_sql(self) -> tuple[str, tuple]:
        sql, params = super().as_sql()
        model = self.query.model
        if sql and model is not None and has_state_indexes(model) and self._names_its_rows():
            table = self.quote_name_unless_alias(self.query.base_table)
            sql = sql.replace(f"UPDATE {table} SET", f"UPDATE {table} {BY_PRIMARY_KEY} SET", 1)
        return sql, params

    def _names_its_rows(self) -> bool:
        """Whether the statement's condition pins the primary key (`pk=` or `pk__in=` a list,
        ANDed with anything else)."""
        where = self.query.where
        if where.negated or where.connector != AND:
            return False
        return any(_on_primary_key(child, self.query.model) for child in where.children)


def _on_primary_key(lookup: object, model: type[Model]) -> bool:
    """Whether `lookup` is `pk=value` or `pk__in=[values]` (not a subquery or expression)."""
    if not isinstance(lookup, Exact | In) or hasattr(lookup.rhs, "resolve_expression"):
        return False
    return getattr(lookup.lhs, "target", None) == model._meta.pk
