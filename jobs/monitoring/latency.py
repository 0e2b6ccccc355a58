"""Each probed queue's live latency, read from its `jobs.LatencyProbe` rows.

A probe's wait is `started_at - run_at`: how long a job put on the queue at that moment
waited for a worker. The live latency is the last probe's wait, or, if a probe has
been waiting longer than that and still is, how long it has waited so far: a queue nobody
serves shows a latency that grows, not the last good number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.models import JobState, LatencyProbe

# A probed queue is stale when no probe has started for this long (the clock enqueues
# one a minute, so this is three missed in a row).
STALE_AFTER = timedelta(minutes=3)


@dataclass(frozen=True)
class QueueLatency:
    queue: str
    latency: timedelta | None  # None: no probe has run or waited yet
    last_started_at: datetime | None
    waiting_since: datetime | None = None  # the oldest probe still waiting, if any

    def stale(self, now: datetime) -> bool:
        """No probe started for STALE_AFTER, and none is waiting that is younger: the
        clock stopped enqueueing them, or no worker takes them. A first probe waiting
        for a few seconds on a new queue is not stale."""
        started_long_ago = self.last_started_at is None or now - self.last_started_at > STALE_AFTER
        waiting_long = self.waiting_since is None or now - self.waiting_since > STALE_AFTER
        return started_long_ago and waiting_long


def queue_latency(queue: str, now: datetime) -> QueueLatency:
    """Two small look-ups: the table keeps a day of probes per queue."""
    rows = LatencyProbe.objects.filter(queue=queue)
    last = (
        rows.exclude(started_at=None)
        .order_by("-started_at")
        .values_list("started_at", "run_at")
        .first()
    )
    waiting_since = (
        rows.filter(state=JobState.PENDING, run_at__lte=now)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
    )
    waits = []
    if last is not None:
        waits.append(max(last[0] - last[1], timedelta(0)))
    if waiting_since is not None:
        waits.append(now - waiting_since)
    return QueueLatency(
        queue=queue,
        latency=max(waits) if waits else None,
        last_started_at=last[0] if last is not None else None,
        waiting_since=waiting_since,
    )
