"""Leases: how a running job proves its worker is still alive.

A claimed job's row carries `lease_expires_at`. While the job runs, a background thread
renews the lease every quarter of `JOBS_LEASE_SECONDS`; a process that is killed, crashes
or freezes stops renewing, the lease runs out, and any worker rescues the job
(`JobQuerySet.rescue`). Renewal is guarded by the attempt number and claimant, so it never
revives a lease on a row that has moved on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections

from jobs import timesource
from jobs.conf import heartbeat_interval, lease_duration
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the leases of the jobs it holds until stopped; `on_beat` runs after each renewal.

    Use it as a context manager around the jobs' execution. The thread has its own database
    connection, so renewals do not wait for a job's long transaction.
    """

    def __init__(self, *, on_beat: Callable[[], None] | None = None) -> None:
        self._on_beat = on_beat
        self._held: dict[tuple[str, Any], Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs-lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def hold(self, job: Any) -> None:
        with self._lock:
            self._held[(job._meta.label, job.pk)] = job

    def release(self, job: Any) -> None:
        with self._lock:
            self._held.pop((job._meta.label, job.pk), None)

    def held(self) -> list:
        with self._lock:
            return list(self._held.values())

    def beat(self) -> None:
        """Renew every held lease, then run `on_beat`."""
        until = timesource.now() + lease_duration()
        for job in self.held():
            if not renew_lease(job, until):
                logger.warning(
                    "%s lost its claim while running; its outcome won't be kept", job.label
                )
                self.release(job)
        if self._on_beat is not None:
            self._on_beat()

    def _run(self) -> None:
        # The database may be away: keep trying every beat. Leases run out only if it stays
        # away longer than a lease, and then rescue is the right outcome anyway.
        outage = Outage("renewing leases")
        try:
            while not self._stop.wait(heartbeat_interval()):
                try:
                    self.beat()
                except CONNECTION_ERRORS as exc:
                    outage.failed(exc)
                except Exception:
                    # A bug in a beat's housekeeping must not end the renewals: every job in
                    # hand would then be rescued and run again while it is still running.
                    logger.exception("a heartbeat failed; trying again at the next one")
                else:
                    outage.succeeded()
        finally:
            connections.close_all()


def renew_lease(job: Job, until: datetime) -> bool:
    """Extend this attempt's lease; False if the row was taken from this attempt.

    An attempt that has just recorded its own outcome has nothing to renew, and has not
    lost anything.
    """
    renewed = job._same_row(state=JobState.RUNNING, **job._claim()).update(lease_expires_at=until)
    return bool(renewed) or job.state != JobState.RUNNING
