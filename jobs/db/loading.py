"""Claimed rows into model instances: the loader behind every claim (`Engine.claim`)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from jobs.models import Job

# The attributes Django puts on a model for a concrete field, whose only effect when set on a
# new instance is an entry in its `__dict__` (a foreign key's also forgets a cached related
# object, which a new instance has not got): what lets `RowLoader` skip `__init__`.
PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)


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
