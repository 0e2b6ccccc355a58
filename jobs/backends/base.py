"""The claim: the pending -> running transition, as one statement two workers cannot both win.

It is the one state change not made through `JobQuerySet._transition`, because choosing
the row and taking it must happen in the same statement (the ORM cannot say SKIP LOCKED
with RETURNING). It moves rows only out of `pending`, as `ALLOWED_FROM` permits.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from jobs.conf import lease_duration
from jobs.models import JobState

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from jobs.models import Job


class Backend:
    """What a worker needs from one database. Subclasses say how rows are kept exclusive."""

    # Appended to the inner SELECT that picks the row; how this database keeps two
    # workers from picking the same one.
    row_lock_clause = ""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def claim(
        self, model: type[Job], *, queue: str | None, worker: str, now: datetime
    ) -> Job | None:
        """Take the next runnable row of `model` (of `queue`, or of any queue if None).

        Runnable means pending with `run_at` come; the order is priority (higher first),
        then `run_at`, then id. The row comes back running, its attempt counted, stamped
        with `started_at`, `worker` and a fresh lease, with all its fields loaded for
        `perform()`.
        """
        sql, params = self._claim_statement(model, queue=queue, worker=worker, now=now)
        claimed = list(model._base_manager.raw(sql, params, using=self.connection.alias))
        return claimed[0] if claimed else None

    def _claim_statement(
        self, model: type[Job], *, queue: str | None, worker: str, now: datetime
    ) -> tuple[str, list]:
        quote = self.connection.ops.quote_name
        column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
        pk = quote(model._meta.pk.column)
        stamp = self.connection.ops.adapt_datetimefield_value(now)
        queue_filter = f" AND {column['queue']} = %s" if queue is not None else ""
        sql = (
            f"UPDATE {quote(model._meta.db_table)}"
            f" SET {column['state']} = %s, {column['attempts']} = {column['attempts']} + 1,"
            f" {column['started_at']} = %s, {column['finished_at']} = NULL,"
            f" {column['claimed_by']} = %s, {column['lease_expires_at']} = %s"
            f" WHERE {pk} = ("
            f"SELECT {pk} FROM {quote(model._meta.db_table)}"
            f" WHERE {column['state']} = %s AND {column['run_at']} <= %s{queue_filter}"
            f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk}"
            f" LIMIT 1{self.row_lock_clause}"
            f") AND {column['state']} = %s"
            f" RETURNING {', '.join(column.values())}"
        )
        lease = self.connection.ops.adapt_datetimefield_value(now + lease_duration())
        params = [JobState.RUNNING, stamp, worker, lease, JobState.PENDING, stamp]
        if queue is not None:
            params.append(queue)
        params.append(JobState.PENDING)
        return sql, params
