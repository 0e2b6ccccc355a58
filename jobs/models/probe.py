"""`LatencyProbe`: the no-op job whose wait measures a queue's live latency."""

from __future__ import annotations

from typing import ClassVar

from jobs.conf.queues import probe_queues
from jobs.models.job import Job


class LatencyProbe(Job):
    """A no-op the clock enqueues every minute on each queue with `probe: True` in
    `JOBS_QUEUES`: how long it waited for a worker is the queue's live latency, measured
    the same way whether the queue is busy or idle."""

    retention: ClassVar[dict[str, float | None]] = {"succeeded": 1, "failed": 1, "cancelled": 1}
    max_attempts = 1
    framework: ClassVar[bool] = True

    @classmethod
    def in_use(cls) -> bool:
        """Only where some queue of `JOBS_QUEUES` asks for probes."""
        return bool(probe_queues())

    def perform(self) -> None:
        """Nothing: the measurement is `started_at - run_at`, written by the claim."""
