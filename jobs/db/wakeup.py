"""Waking idle workers when rows become runnable, once per transaction, naming the job model.

A worker sleeping between polls should start a new job within milliseconds, but only once
the row is committed: before that it cannot see it. So the wake-up is sent on commit
(`transaction.on_commit`; at once in autocommit), and everything one transaction enqueues,
be it one row or ten thousand, wakes workers with one statement.

A wake-up is a hint `(queue, model label)`, sent as the payload "<queue> <app_label.Model>"
(queue names cannot hold a space, see `jobs.validation`). The model lets a worker go on
skipping the tables it knows are empty (`jobs.runtime.claims`). A payload without the model
part (a sender from before this format, during a rolling deploy) means any model of that
queue; the queue `ANY_QUEUE` means every queue (of the model named, or of every model).

A pause or resume of a queue (`jobs.models.QueuePause`) is announced as "<queue> !pauses":
the label `PAUSES` can be no model's (labels hold a dot and no "!"), so a worker from before
pauses drops it as a model it does not serve, while a current one rereads the pauses at once
and asks the queue's tables again (`jobs.runtime.claims`).

The batch for the current transaction is found through a weak reference: Django holds the
only strong reference (in its on-commit list), so when the transaction rolls back and Django
drops the callback, the batch disappears with it and the next enqueue starts a new one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import connections, transaction

from jobs.db import engine_for

if TYPE_CHECKING:
    from jobs.models import Job

# The hint for rows whose queue the sender does not know (a bulk requeue): every worker wakes.
ANY_QUEUE = "*"

# (queue, model label); a label of None means any job model.
Hint = tuple[str, str | None]

# The label of a hint that says the pauses of its queue changed: no model's label.
PAUSES = "!pauses"


def pauses_changed(queue: str) -> Hint:
    """The hint for a queue paused or resumed (for every model or one)."""
    return (queue, PAUSES)


def hint_for(queue: str, model: type[Job]) -> Hint:
    """The hint for rows of `model` made runnable in `queue`.

    Named after the concrete model, which is what workers claim from: a proxy's rows are
    its concrete model's rows.
    """
    return (queue, model._meta.concrete_model._meta.label)


# The payload that asks every listening worker to write its running jobs' stacks now (the
# admin's "Refresh stack"): not a hint, as no queue name starts with "*".
STACK_REQUEST = "*stack"


def payload(hint: Hint) -> str:
    """What a NOTIFY carries for `hint`."""
    queue, label = hint
    return queue if label is None else f"{queue} {label}"


def read_payload(text: str) -> Hint:
    """The hint a NOTIFY's payload carries; a queue alone (an older sender) means any model."""
    queue, _, label = text.partition(" ")
    return (queue, label or None)


class _WakeUp:
    def __init__(self, using: str) -> None:
        self.using = using
        self.hints: set[Hint] = set()
        self.sent = False

    def send(self) -> None:
        self.sent = True
        engine_for(self.using).wake_workers(payload(hint) for hint in self.hints)


def wake_workers_on_commit(using: str, hints: Iterable[Hint]) -> None:
    """Wake workers serving the hints' queues and models once the current transaction on
    `using` commits (see `hint_for`)."""
    connection = connections[using]
    if not engine_for(using).wakes_workers:
        return
    batch = getattr(connection, "_jobs_wake_up", lambda: None)()
    if batch is None or batch.sent:
        batch = _WakeUp(using)
        connection._jobs_wake_up = weakref.ref(batch)
        batch.hints.update(hints)
        # robust: the rows are committed; a failed wake-up costs a poll interval, not an error.
        transaction.on_commit(batch.send, using=using, robust=True)
    else:
        batch.hints.update(hints)


def ask_for_stacks(using: str) -> bool:
    """Ask the workers to write their running jobs' stacks now (`STACK_REQUEST`, sent when
    the caller's transaction commits); False where they cannot be told (no notifications on
    this database, or `JOBS_LISTEN` off): then they come with the next lease renewal."""
    if not engine_for(using).wakes_workers:
        return False
    transaction.on_commit(lambda: engine_for(using).wake_workers([STACK_REQUEST]), using=using)
    return True
