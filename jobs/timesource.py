"""The one source of "now" for everything that schedules, backs off or expires.

Several workers on several hosts decide things about the same rows by time: whether a
pending row is due, whether a running row's lease has run out, whether a schedule's slot has
come. If each trusted its own host's clock, a host 10 s ahead would take a healthy worker's
job as orphaned, and one 10 s behind would have its own jobs taken. So time comes from the
database server: `synchronise()` reads the server's clock, and from then on `now()` is that
reading plus the time elapsed on this process's monotonic clock, which the host's wall clock
being wrong, or being stepped by NTP, does not move. A worker synchronises when it starts
and at every heartbeat; a process that enqueues does so at most once a minute (`refresh()`).
Before the first synchronisation, and on SQLite (one host, no server clock), `now()` is the
host's own time.

Callers write `timesource.now()` (not `from jobs.timesource import now`) so a test can move
time by patching this module's `now` instead of sleeping.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from jobs.db.clock import reads_server_clock, server_time

logger = logging.getLogger(__name__)

# How far a monotonic clock may drift from true time, at worst: an old reading's error grows
# by this much per second of its age, so a fresher reading with a longer round trip can win.
DRIFT_PER_SECOND = 1e-4
# `refresh()` reads the server's clock again once the last reading is this old.
REFRESH_SECONDS = 60.0
# An offset of this much or more is logged as a warning: harmless to the framework (which no
# longer uses the host's clock), but a sign of a host whose other software may suffer.
NOTABLE_OFFSET_SECONDS = 1.0


@dataclass(frozen=True)
class Reading:
    """One reading of the server's clock, tied to this process's monotonic clock."""

    server: datetime  # the server's time ...
    monotonic: float  # ... at this monotonic instant (the middle of the round trip)
    offset: float  # seconds this host's wall clock is ahead of the server's (negative: behind)
    error: float  # at most this many seconds off: half the round trip

    def error_after(self, seconds: float) -> float:
        return self.error + seconds * DRIFT_PER_SECOND


_reading: Reading | None = None


def now() -> datetime:
    """The database server's time as this process best knows it (see the module's doc)."""
    reading = _reading
    if reading is None:
        return timezone.now()
    return reading.server + timedelta(seconds=time.monotonic() - reading.monotonic)


def synchronise(using: str = DEFAULT_DB_ALIAS, *, announce: bool = False) -> Reading | None:
    """Read the server's clock and keep the reading if it is better than the one kept.

    Better means a smaller possible error once the kept reading's age is counted, so a
    reading delayed by a slow round trip does not replace a precise one. Returns the reading
    now in use (None on SQLite). Raises the database's errors, like any query. The offset
    is logged when it is notable, or first changes by that much; with `announce` (a worker
    starting), the first reading is logged whatever it is.
    """
    global _reading
    if not reads_server_clock(using):
        return None
    before, wall_before = time.monotonic(), time.time()
    server = server_time(using)
    after = time.monotonic()
    middle = (before + after) / 2
    wall = wall_before + (middle - before)
    fresh = Reading(server, middle, wall - server.timestamp(), (after - before) / 2)
    kept = _reading
    if kept is None or fresh.error <= kept.error_after(middle - kept.monotonic):
        if kept is None:
            if announce or abs(fresh.offset) >= NOTABLE_OFFSET_SECONDS:
                _log_offset(fresh, first=True)
        elif abs(fresh.offset - kept.offset) >= NOTABLE_OFFSET_SECONDS:
            _log_offset(fresh, first=False)
        _reading = fresh
    return _reading


def refresh(using: str = DEFAULT_DB_ALIAS) -> None:
    """`synchronise()` if there is no reading yet or the last is older than REFRESH_SECONDS:
    what a process that only enqueues calls, so its jobs' `run_at` is the server's time."""
    reading = _reading
    if reading is None or time.monotonic() - reading.monotonic >= REFRESH_SECONDS:
        synchronise(using)


def reading() -> Reading | None:
    """The reading in use, for the worker page and the metrics (None: host time)."""
    return _reading


def forget() -> None:
    """Drop the reading: back to the host's clock (tests, and a process that changes database)."""
    global _reading
    _reading = None


def _log_offset(fresh: Reading, *, first: bool) -> None:
    level = logging.WARNING if abs(fresh.offset) >= NOTABLE_OFFSET_SECONDS else logging.INFO
    direction = "ahead of" if fresh.offset >= 0 else "behind"
    logger.log(
        level,
        "this host's clock is %.3fs %s the database's (measured to within %.1f ms)%s; "
        "jobs use the database's time",
        abs(fresh.offset),
        direction,
        fresh.error * 1000,
        "" if first else ", a change since the last reading",
    )
