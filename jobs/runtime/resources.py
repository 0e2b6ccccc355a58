"""How much memory this process holds: for `runjobs --max-memory`, and each attempt's growth.

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

import resource
import tracemalloc
from pathlib import Path

from django.conf import settings

STATM = Path("/proc/self/statm")
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
