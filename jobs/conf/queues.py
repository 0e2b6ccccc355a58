"""`JOBS_QUEUES`: what each queue promises, read and checked in one place.

    JOBS_QUEUES = {
        "urgent": {"sla": "30s", "probe": True},
        "reports": {"sla": "2h", "max_failure_rate": 0.2},
    }

`sla` is the longest a runnable job should wait before a worker starts it (default
DEFAULT_SLA, None for no limit); `probe` asks the clock to enqueue a no-op
`jobs.LatencyProbe` on the queue every minute, whose wait is the queue's live latency;
`max_failure_rate` is the share of the last hour's finished jobs that may fail before health
checks warn (default DEFAULT_MAX_FAILURE_RATE, None to never warn).

The setting refines, it does not choose: health checks cover every queue the job models use,
and a queue not named here is held to `QueueSettings(name)`, the defaults. Naming a queue
also promises that some worker serves it, even while it is empty (`jobs.monitoring.health`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from jobs.durations import parse_duration
from jobs.validation import reject_unknown_keys, validate_queue_name

# What a queue that JOBS_QUEUES does not name (or names without `sla`) promises: a runnable
# job starts within 10 minutes. Long enough for a busy queue's ordinary backlog, short enough
# that a queue nobody drains is reported within the quarter hour an operator would notice it.
DEFAULT_SLA = timedelta(minutes=10)
DEFAULT_MAX_FAILURE_RATE = 0.5
KEYS = ("sla", "probe", "max_failure_rate")
# Keys an earlier release read, and what they are called now: "heartbeat" is the worker's
# sign of life, so the latency probe lost that name.
RENAMED_KEYS = {"heartbeat": "probe"}


@dataclass(frozen=True)
class QueueSettings:
    """A queue's promises; `QueueSettings(name)` is what an unnamed queue is held to."""

    name: str
    sla: timedelta | None = DEFAULT_SLA
    probe: bool = False
    max_failure_rate: float | None = DEFAULT_MAX_FAILURE_RATE


def configured_queues() -> dict[str, QueueSettings]:
    """The setting, parsed; ValueError (`manage.py check` shows it as jobs.E008) if unusable."""
    raw = getattr(settings, "JOBS_QUEUES", {})
    if not isinstance(raw, dict):
        raise ValueError(f"JOBS_QUEUES must be a dict of queue name to options, got {raw!r}")
    return {name: parse_queue(name, options) for name, options in raw.items()}


def parse_queue(name: object, options: object) -> QueueSettings:
    where = f"JOBS_QUEUES[{name!r}]"
    try:
        validate_queue_name(name)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{where} must be a dict of options ({', '.join(KEYS)}), got {options!r}")
    for old, new in RENAMED_KEYS.items():
        if old in options:
            raise ValueError(f"{where}: the option {old!r} is now called {new!r}")
    reject_unknown_keys(where, options, KEYS, "option")
    sla = options.get("sla", DEFAULT_SLA)
    probe = options.get("probe", False)
    if not isinstance(probe, bool):
        raise ValueError(f"{where}['probe'] must be True or False, got {probe!r}")
    rate = options.get("max_failure_rate", DEFAULT_MAX_FAILURE_RATE)
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1
    ):
        raise ValueError(
            f"{where}['max_failure_rate'] must be a share between 0 and 1 (or None), got {rate!r}"
        )
    return QueueSettings(
        name=name,
        sla=None if sla is None else parse_duration(sla, f"{where}['sla']"),
        probe=probe,
        max_failure_rate=rate,
    )


def probe_queues() -> list[str]:
    """The queues whose live latency a `LatencyProbe` measures."""
    return [name for name, queue in configured_queues().items() if queue.probe]
