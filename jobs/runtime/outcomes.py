"""The outcomes a worker's job threads have finished and its main thread has yet to write.

Written in batches: everything finished since the last claim goes in the same transaction as
the next claim (`write_with`), so a busy worker commits once per turn of its loop rather than
once per job, and a one-thread worker's "finish one, take the next" is one commit. Each row is
still fenced by its own claim (`jobs.execution.record`). Until its transaction commits, an
outcome is not settled: its job thread waits before it logs the outcome or sends a signal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, transaction

from jobs import execution
from jobs.db import engine_for
from jobs.db.outage import CONNECTION_ERRORS, Outage

T = TypeVar("T")


class Outcomes:
    """Finished attempts awaiting their write, on database `using`. Main thread only."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._waiting: list[execution.Outcome] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, outcome: execution.Outcome) -> None:
        self._waiting.append(outcome)

    def write_with(self, claim: Callable[[], T]) -> T:
        """Write the waiting outcomes and `claim()` in one transaction; returns the claim's
        result. A connection error rolls back both, to be tried again whole.

        If the database refuses an outcome, the outcomes are written one by one (so the
        others are kept) and the claim follows on its own.
        """
        if not self._waiting:
            return claim()  # one statement needs no transaction of its own
        engine_for(self.using).prepare_claiming_session()  # outside the transaction
        waiting = list(self._waiting)
        try:
            with transaction.atomic(using=self.using):
                written = execution.record(waiting, using=self.using)
                claimed = claim()
        except DatabaseError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            self.write()
            return claim()
        self._settle(waiting, written)
        return claimed

    def write(self) -> None:
        """Write the waiting outcomes without claiming, each in its own transaction."""
        waiting = list(self._waiting)
        self._settle(waiting, execution.record_each(waiting, using=self.using))

    def write_before_leaving(self, outage: Outage) -> None:
        """One try, for a worker that is stopping and no longer waits outages out."""
        try:
            self.write()
        except CONNECTION_ERRORS as exc:
            outage.failed(exc)
            self.abandon()

    def abandon(self) -> None:
        """Give up writing: the rows stay running until their leases run out and they are
        rescued, and each job thread says so."""
        waiting = list(self._waiting)
        self._settle(waiting, [None] * len(waiting))

    def _settle(self, outcomes: list[execution.Outcome], written: list[bool | None]) -> None:
        execution.settle(outcomes, written)
        del self._waiting[: len(outcomes)]
