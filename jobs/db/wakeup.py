"""Waking idle workers when rows become runnable, once per transaction.

A worker sleeping between polls should start a new job within milliseconds, but only once
the row is committed: before that it cannot see it. So the wake-up is sent on commit
(`transaction.on_commit`; at once in autocommit), and everything one transaction enqueues,
be it one row or ten thousand, wakes workers with one statement.

The batch for the current transaction is found through a weak reference: Django holds the
only strong reference (in its on-commit list), so when the transaction rolls back and Django
drops the callback, the batch disappears with it and the next enqueue starts a new one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

from django.db import connections, transaction

from jobs.db import engine_for

# The hint for rows whose queue the sender does not know (a bulk requeue): every worker wakes.
ANY_QUEUE = "*"


class _WakeUp:
    def __init__(self, using: str) -> None:
        self.using = using
        self.queues: set[str] = set()
        self.sent = False

    def send(self) -> None:
        self.sent = True
        engine_for(self.using).wake_workers(self.queues)


def wake_workers_on_commit(using: str, queues: Iterable[str]) -> None:
    """Wake workers serving `queues` once the current transaction on `using` commits."""
    connection = connections[using]
    if not engine_for(using).wakes_workers:
        return
    batch = getattr(connection, "_jobs_wake_up", lambda: None)()
    if batch is None or batch.sent:
        batch = _WakeUp(using)
        connection._jobs_wake_up = weakref.ref(batch)
        batch.queues.update(queues)
        # robust: the rows are committed; a failed wake-up costs a poll interval, not an error.
        transaction.on_commit(batch.send, using=using, robust=True)
    else:
        batch.queues.update(queues)
