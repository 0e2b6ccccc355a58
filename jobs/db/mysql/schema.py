"""Partial indexes and partial unique constraints where the database has neither.

A job table's partial indexes are each limited to one state (`state = 'pending'`) or a few
(`state IN (...)`, `jobs.models.options`). Without the condition, an index led by `state`
keeps the same rows together in the same order: the pending rows of a queue in claim
order, however many finished rows the table holds. Any other condition is dropped, as
Django's MySQL backend drops it.

A partial unique constraint becomes a unique index over its columns plus an invisible
generated column, `<name>_on`, that is 1 where the condition holds and NULL elsewhere: two
rows collide only where both meet the condition, exactly as under a partial index. The
column is VIRTUAL, computed from the row on write and stored only in the index.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.ddl_references import Statement
from django.db.backends.mysql.schema import DatabaseSchemaEditor as MySQLSchemaEditor

STATE_FIELD = "state"


def _on_state_only(condition: models.Q | None) -> bool:
    """Whether `condition` only says which states a row is in (ANDed `state` lookups)."""
    if condition is None or condition.negated or condition.connector != models.Q.AND:
        return False
    return all(
        isinstance(child, tuple) and child[0] in (STATE_FIELD, f"{STATE_FIELD}__in")
        for child in condition.children
    )


def stored_index(index: models.Index) -> models.Index:
    """What `index` is stored as here: its state condition as the leading column, or without a
    condition it cannot keep (see the module's docstring)."""
    if index.condition is None:
        return index
    _path, args, kwargs = index.deconstruct()
    kwargs.pop("condition")
    fields = list(kwargs.get("fields", ()))
    if _on_state_only(index.condition) and fields and fields[0].lstrip("-") != STATE_FIELD:
        kwargs["fields"] = [STATE_FIELD, *fields]
    return models.Index(*args, **kwargs)


def has_state_indexes(model: Any) -> bool:
    """Whether `model`'s table has partial indexes stored as indexes led by `state` (a job
    table's, `jobs.models.options`)."""
    return any(
        index.condition is not None and _on_state_only(index.condition)
        for index in model._meta.indexes
    )


def flag_column(name: str) -> str:
    """The generated column of partial unique constraint `name`."""
    return f"{name}_on"


class DatabaseSchemaEditor(MySQLSchemaEditor):
    def _model_indexes_sql(self, model: Any) -> list:
        if not model._meta.managed or model._meta.proxy or model._meta.swapped:
            return super()._model_indexes_sql(model)
        indexes = model._meta.indexes
        model._meta.indexes = [stored_index(index) for index in indexes]
        try:
            return super()._model_indexes_sql(model)
        finally:
            model._meta.indexes = indexes

    def add_index(self, model: Any, index: models.Index) -> None:
        super().add_index(model, stored_index(index))

    def _create_unique_sql(
        self, model: Any, fields: Any, name: Any = None, condition: Any = None, **kwargs: Any
    ) -> Statement | str | None:
        if not condition:
            return super()._create_unique_sql(model, fields, name, condition, **kwargs)
        quote = self.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        return (
            f"ALTER TABLE {quote(model._meta.db_table)}"
            f" ADD COLUMN {quote(flag_column(name))} tinyint"
            f" AS (CASE WHEN {condition} THEN 1 END) VIRTUAL INVISIBLE,"
            f" ADD UNIQUE INDEX {quote(name)} ({columns}, {quote(flag_column(name))})"
        )

    def _delete_unique_sql(
        self, model: Any, name: str, condition: Any = None, **kwargs: Any
    ) -> Statement | str | None:
        if not condition:
            return super()._delete_unique_sql(model, name, condition, **kwargs)
        quote = self.quote_name
        return (
            f"ALTER TABLE {quote(model._meta.db_table)} DROP INDEX {quote(name)},"
            f" DROP COLUMN {quote(flag_column(name))}"
        )
