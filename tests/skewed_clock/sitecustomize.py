"""Loaded (through PYTHONPATH) by test processes that run on a skewed clock (libfaketime).

libfaketime 0.9.10, which moves the process's wall clock, makes `clock_nanosleep()` fail
with EINVAL when the monotonic clock is left real, so `time.sleep()` raises. A condition
wait is not affected; jobs that sleep use that instead. Nothing else is changed.
"""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
