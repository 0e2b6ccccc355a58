"""Send what a job reads to a read replica: a job middleware and a database router.

    JOBS_MIDDLEWARE = ["jobs.contrib.replica.ReplicaReads"]
    DATABASE_ROUTERS = ["jobs.contrib.replica.ReplicaRouter"]
    JOBS_READ_REPLICA = "replica"  # an alias of DATABASES

While an attempt runs inside `ReplicaReads`, the ORM's reads on the job's thread go to the
replica; writes, and every read of Django's router for write (`db_for_write`), stay on the
primary. Three kinds of read stay on the primary too, because a replica may lag:

- reads of job models: the framework's own (the job's row, its cancel request, its lease)
  and any job's reads of other jobs, which must see the latest state;
- reads made inside a transaction the job opened on the primary, so a job sees its own writes;
- reads of a job model that opts out with `reads_from_replica = False` (every read it makes).

A model or a query that names its database (`using("default")`) is not routed. Outside an
attempt (views, the admin, the shell) the router says nothing and the next router or the
default database answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from jobs.conf import read_replica_setting
from jobs.models import Job

_reading = threading.local()  # .alias: the replica, while an attempt on this thread reads it


class ReplicaReads:
    """Job middleware: the attempt's ORM reads go to `JOBS_READ_REPLICA` (see the module)."""

    def __init__(self, perform_next: Callable[[Job], object]) -> None:
        self.perform_next = perform_next

    def __call__(self, job: Job) -> object:
        if not getattr(job, "reads_from_replica", True):
            return self.perform_next(job)
        previous = getattr(_reading, "alias", None)
        _reading.alias = read_replica_setting()
        try:
            return self.perform_next(job)
        finally:
            _reading.alias = previous


class ReplicaRouter:
    """Database router: reads on a thread inside `ReplicaReads` go to the replica, but for
    job models and inside a transaction on the primary; otherwise no opinion."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        alias = getattr(_reading, "alias", None)
        if alias is None or issubclass(model, Job):
            return None
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return None  # the job's own transaction: read its own writes
        return alias
