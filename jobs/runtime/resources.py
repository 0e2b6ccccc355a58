"""How much memory this process holds (for `runjobs --max-memory`, each attempt's growth and
the workers page's RSS over time), and how busy the host's CPUs are (for autoscaling).

A job thread notes the process's peak resident memory before and after each attempt and
writes the difference on the job's row (`memory_growth_kb`): how far the attempt pushed the
process's high-water mark. A job that needs memory for a while raises it once, and later
attempts reuse what it freed (growth 0); a job that leaks raises it attempt after attempt,
where the process's size alone shows only that something leaks. With several job threads it
is the process's mark, so a neighbour's allocations count too; a leak still stands out as
the job whose attempts keep raising it.
With `JOBS_TRACE_MEMORY` on, tracemalloc records allocations (it slows Python down, so it is
for a hunt, not for every day), and an attempt that grew by more than
`JOBS_TRACE_MEMORY_THRESHOLD_MB` gets the ten lines of code that allocated the most during it
at the end of its log.
"""

from __future__ import annotations

import os
import resource
import tracemalloc
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

STATM = Path("/proc/self/statm")
STAT = Path("/proc/stat")
# RSS readings a `Worker` row keeps, one per heartbeat: half an hour at the default lease.
MEMORY_SAMPLES_KEPT = 120
# Allocation sites a traced attempt's log names, the most grown first.
SITES_SHOWN = 10
# Frames tracemalloc keeps per allocation when tracing starts here.
TRACE_FRAMES = 1


def resident_memory_mb() -> float:
    """Current resident set size; where /proc is missing, the peak (an upper bound)."""
    try:
        resident_pages = int(STATM.read_text().split()[1])
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return resident_pages * resource.getpagesize() / (1024 * 1024)


class ProcessMemory:
    """This process's resident memory, read at each heartbeat: the latest readings for its
    `Worker` row (the workers page draws them), and whether it has passed `--max-memory`."""

    def __init__(self, limit_mb: float | None = None) -> None:
        self.limit_mb = limit_mb
        self._samples: deque[list] = deque(maxlen=MEMORY_SAMPLES_KEPT)

    def sample(self, at: datetime) -> dict[str, Any]:
        """Read it now; the `Worker` fields to write: the reading and the readings kept."""
        megabytes = round(resident_memory_mb(), 1)
        self._samples.append([int(at.timestamp()), megabytes])
        return {"memory_mb": megabytes, "memory_samples": list(self._samples)}

    def over_limit(self) -> str | None:
        """Why the process should be recycled for its memory, or None if it need not be."""
        if self.limit_mb is None or (held := resident_memory_mb()) <= self.limit_mb:
            return None
        return f"held {held:.0f} MB (--max-memory {self.limit_mb:.0f})"


class CpuMeter:
    """How busy the host's CPUs were since the previous reading: the share of time not idle,
    from /proc/stat; where that is missing, the load average per CPU (capped at 1)."""

    def __init__(self) -> None:
        self._previous = self._times()

    def busy(self) -> float:
        current = self._times()
        if current is None or self._previous is None:
            self._previous = current
            return min(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
        busy, total = (now - then for now, then in zip(current, self._previous, strict=True))
        self._previous = current
        return busy / total if total > 0 else 0.0

    @staticmethod
    def _times() -> tuple[int, int] | None:
        """(busy, total) clock ticks of every CPU since boot; idle and iowait are not busy."""
        try:
            ticks = [int(field) for field in STAT.read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal; guests are in user
        return total - ticks[3] - ticks[4], total


def peak_memory_kb() -> int:
    """The most resident memory this process has held so far (its high-water mark), in KiB:
    one system call that keeps the GIL, where reading the current size is a file read that
    lets every other job thread in (a fifth of a busy worker's throughput, measured)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def tracing() -> bool:
    """Whether attempts' allocations are traced (`JOBS_TRACE_MEMORY`); starts tracemalloc the
    first time it says yes."""
    if not getattr(settings, "JOBS_TRACE_MEMORY", False):
        return False
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)
    return True


class AttemptMemory:
    """What one attempt did to the process's memory: `begin()` before it, `end()` after."""

    def begin(self) -> None:
        self._before = peak_memory_kb()
        self._snapshot = tracemalloc.take_snapshot() if tracing() else None

    def end(self) -> tuple[int, str]:
        """(growth in KiB, the allocation sites that grew most, or "" unless traced and over
        the threshold)."""
        growth_kb = peak_memory_kb() - self._before
        threshold_mb = getattr(settings, "JOBS_TRACE_MEMORY_THRESHOLD_MB", 10)
        if self._snapshot is None or growth_kb < threshold_mb * 1024:
            return growth_kb, ""
        grown = tracemalloc.take_snapshot().compare_to(self._snapshot, "lineno")
        lines = [f"memory: the process grew by {growth_kb / 1024:.1f} MB during this attempt;"]
        lines.append("the lines that allocated the most meanwhile (tracemalloc):")
        lines += [f"  {stat}" for stat in grown[:SITES_SHOWN]]
        return growth_kb, "\n".join(lines)
