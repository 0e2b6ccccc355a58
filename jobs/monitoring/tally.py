"""Counters and histograms of what jobs did, counted in each process, summed in the database.

A deployment runs many worker processes on many hosts, and a Prometheus scrape must see their
sum. prometheus-client keeps a counter in one process's memory; its multiprocess mode shares
files in one directory, so it adds up the processes of one host only, and loses a process's
counts when its files are cleaned up. Here each process counts in memory (`Tally`, fed by the
lifecycle signals: cheap, no query per job) and regularly adds what it counted to
`MetricTally` rows (`value = value + n`) in one short transaction: the database holds the
deployment-wide totals, and `jobs.monitoring.metrics` reads them at scrape time.

When the counts are saved: a worker process flushes once per heartbeat and on its way out
(`batch_flushes()`); any other process (a shell, a web request running `run()`, a test) saves
them as soon as an attempt's outcome is counted, so nothing waits for a flush that never
comes.

What the design can lose: the counts a process made since its last flush, if it dies without
flushing (SIGKILL, power loss): at most one heartbeat (`JOBS_LEASE_SECONDS / 4`) of a
worker's counts. A database outage loses nothing: the counts wait in memory for the next
flush. If the connection drops during the COMMIT itself, the process cannot tell whether the
commit happened and keeps the counts, so they may be added twice.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import F
from prometheus_client.utils import floatToGoString

from jobs import signals
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.models import MetricTally

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

SUCCEEDED = "jobs_succeeded_total"
FAILED = "jobs_failed_total"
RETRIED = "jobs_retried_total"
RESCUED = "jobs_rescued_total"
RUN_DURATION = "jobs_run_duration_seconds"
WAIT = "jobs_wait_seconds"

# Upper bounds, in seconds, of both histograms' buckets: from a quick job's run to a wait of
# an hour (a queue badly over its SLA). An observation goes into the first bound >= it.
SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
    math.inf,
)  # fmt: skip
BUCKET_LABELS = tuple(floatToGoString(bound) for bound in SECONDS_BUCKETS)

# (series name, queue, job model label, bucket label or "")
Key = tuple[str, str, str, str]


class Tally:
    """What this process counted since its last flush: deltas, not totals. Thread-safe.

    A histogram is kept as one count per bucket (the bucket an observation fell in, not the
    cumulative count Prometheus shows) and a sum: one observation touches two keys, and a
    histogram's count is the sum of its buckets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deltas: dict[Key, float] = {}
        self._outage = Outage("saving job metrics")
        self.batched = False  # True in a worker, which flushes on its heartbeat

    def record(
        self,
        job: Job,
        *,
        counter: str | None = None,
        histogram: str | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Count one event of `job`: `counter` goes up by one, `seconds` is observed in
        `histogram`. Labelled with the job's queue and (concrete) model."""
        queue, model = job.queue, job._meta.concrete_model._meta.label
        with self._lock:
            if counter is not None:
                self._add((counter, queue, model, ""), 1)
            if histogram is not None:
                bucket = BUCKET_LABELS[bisect_left(SECONDS_BUCKETS, seconds)]
                self._add((f"{histogram}_bucket", queue, model, bucket), 1)
                self._add((f"{histogram}_sum", queue, model, ""), seconds)

    def flush(self, using: str) -> bool:
        """Add the counts to the `MetricTally` rows of database `using`, then forget them.

        One transaction, rows updated in one order, so flushes from any number of processes
        neither deadlock nor lose an increment. If the database cannot be reached the counts
        are kept for the next flush and False is returned; the outage is logged once.
        """
        with self._lock:
            deltas, self._deltas = self._deltas, {}
        if not deltas:
            return True
        try:
            _add_to_rows(deltas, using)
        except CONNECTION_ERRORS as exc:
            with self._lock:
                for key, delta in deltas.items():
                    self._add(key, delta)
                self._outage.failed(exc)
            return False
        with self._lock:
            self._outage.succeeded()
        return True

    def _add(self, key: Key, delta: float) -> None:
        self._deltas[key] = self._deltas.get(key, 0) + delta


def _add_to_rows(deltas: dict[Key, float], using: str) -> None:
    """`value = value + delta` per series, inserting the rows that do not exist yet.

    Two processes may both find a series missing and both insert it: the loser's insert
    fails on the unique constraint (inside a savepoint, so the transaction goes on) and it
    adds to the winner's row instead.
    """
    rows = MetricTally.objects.using(using)
    with transaction.atomic(using=using):
        for key in sorted(deltas):
            name, queue, model, bucket = key
            series = rows.filter(name=name, queue=queue, model=model, bucket=bucket)
            if series.update(value=F("value") + deltas[key]):
                continue
            try:
                with transaction.atomic(using=using):
                    rows.create(
                        name=name, queue=queue, model=model, bucket=bucket, value=deltas[key]
                    )
            except IntegrityError:
                series.update(value=F("value") + deltas[key])


# The process's tally. Looked up at each call, so a test can swap in a fresh one.
TALLY = Tally()


def flush(using: str) -> bool:
    """Save what this process counted to database `using` (see `Tally.flush`)."""
    return TALLY.flush(using)


def connect() -> None:
    """Count the lifecycle signals of every job model (called once, from `JobsConfig.ready`)."""
    for signal, receiver in RECEIVERS.items():
        signal.connect(receiver, dispatch_uid=f"jobs.monitoring.tally.{receiver.__name__}")


def _started(job: Job, **kwargs: Any) -> None:
    """The wait: from when the job was due to when a worker started it (0 if never queued).

    Clamped at 0, so a worker clock a little behind the enqueuer's records no negative wait.
    """
    waited = (job.started_at - job.run_at).total_seconds() if job.run_at else 0.0
    TALLY.record(job, histogram=WAIT, seconds=max(waited, 0.0))


def _succeeded(job: Job, duration: float, **kwargs: Any) -> None:
    TALLY.record(job, counter=SUCCEEDED, histogram=RUN_DURATION, seconds=duration)
    _flush_unless_batched(job)


def _retried(job: Job, duration: float, **kwargs: Any) -> None:
    TALLY.record(job, counter=RETRIED, histogram=RUN_DURATION, seconds=duration)
    _flush_unless_batched(job)


def _failed(job: Job, duration: float, **kwargs: Any) -> None:
    TALLY.record(job, counter=FAILED, histogram=RUN_DURATION, seconds=duration)
    _flush_unless_batched(job)


def _rescued(job: Job, **kwargs: Any) -> None:
    TALLY.record(job, counter=RESCUED)
    _flush_unless_batched(job)


def _flush_unless_batched(job: Job) -> None:
    """Outside a worker, save an outcome's counts at once: no heartbeat will."""
    if not TALLY.batched:
        TALLY.flush(using=job._state.db or DEFAULT_DB_ALIAS)


def batch_flushes() -> Callable[[], None]:
    """Keep counts in memory until `flush()`: what a worker does, flushing once per heartbeat
    (and on its way out) instead of once per job. Returns what undoes it, for a worker that
    runs in a thread of a longer-lived process (a test)."""
    tally, before = TALLY, TALLY.batched
    tally.batched = True

    def restore() -> None:
        tally.batched = before

    return restore


RECEIVERS = {
    signals.job_started: _started,
    signals.job_succeeded: _succeeded,
    signals.job_retried: _retried,
    signals.job_failed: _failed,
    signals.job_rescued: _rescued,
}
