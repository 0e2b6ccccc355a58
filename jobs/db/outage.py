"""Database outages: logged once when they begin and once when they end, with backoff between.

A worker whose database restarts must not crash, nor fill its log with one line per poll.
"""

from __future__ import annotations

import logging
import time

from django.db import InterfaceError, OperationalError, connections

from jobs import backoff

# What a dropped connection or a restarting server raises through Django.
CONNECTION_ERRORS = (OperationalError, InterfaceError)
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0

logger = logging.getLogger(__name__)


class Outage:
    """Tracks one thread's view of the database being away, for `what` (e.g. "claiming")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._began: float | None = None
        self._failures = 0

    def failed(self, exc: BaseException) -> float:
        """Note a failed call; returns how long to wait before the next try (exponential)."""
        if self._began is None:
            self._began = time.monotonic()
            logger.warning(
                "database unavailable while %s: %s; retrying with backoff", self.what, exc
            )
        self._failures += 1
        close_broken_connections()
        return backoff.delay(self._failures, first=FIRST_BACKOFF, cap=MAX_BACKOFF)

    @property
    def ongoing(self) -> bool:
        """Whether the database is away (a call failed and none has succeeded since)."""
        return self._began is not None

    def succeeded(self) -> None:
        if self._began is not None:
            logger.warning(
                "database back for %s after %.1fs (%d failed tries)",
                self.what,
                time.monotonic() - self._began,
                self._failures,
            )
        self._began = None
        self._failures = 0


def close_broken_connections() -> None:
    """Drop this thread's connections that a job or a claim left unusable.

    Only after an error: Django's close_old_connections() would also close healthy
    connections when CONN_MAX_AGE is 0, costing a reconnect per job.
    """
    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()
