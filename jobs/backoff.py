"""Exponential backoff: how long to wait after the n-th failure in a row.

The one rule for a job's retries, a worker waiting out a database outage and a supervisor
restarting a crashing worker process: double each time, from `first`, never past `cap`.
"""

from __future__ import annotations

import random


def delay(failures: int, *, first: float, cap: float, jitter: bool = False) -> float:
    """Seconds to wait after `failures` failures in a row (1 for the first).

    With `jitter`, "equal jitter": half the delay plus a random share of the other half, so
    things that failed together do not all try again at the same instant.
    """
    ceiling = min(cap, first * 2 ** (max(failures, 1) - 1))
    return ceiling / 2 + ceiling / 2 * random.random() if jitter else ceiling
