"""How much memory this process holds, for `runjobs --max-memory`."""

import resource
from pathlib import Path

STATM = Path("/proc/self/statm")


def resident_memory_mb() -> float:
    """Current resident set size; where /proc is missing, the peak (an upper bound)."""
    try:
        resident_pages = int(STATM.read_text().split()[1])
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return resident_pages * resource.getpagesize() / (1024 * 1024)
