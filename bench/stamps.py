"""When each job's own code began, as the job itself saw it: the end of "latency as users see it".

A job (or a Celery task) calls `stamp(key)` on its first line; the benchmark reads the file
back with `read()`. Both ends of a latency are `time.time()` on this one host, so the two
clocks are the same clock. Only where `STAMPS_ENV` names a file does a job pay for it, so the
drains measure a job that does nothing at all. Imports no Django: the Celery worker uses it too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STAMPS_ENV = "BENCH_STAMPS"
STAMPS = os.environ.get(STAMPS_ENV)


def stamp(key: object) -> None:
    """Append "key started finished" (epoch seconds) to the file; a no-op when none is set.

    One `os.write` on an O_APPEND descriptor, so lines from several threads or processes
    never interleave. `finished` is taken after `started` with nothing in between: the job
    does no work, and the drain of a queue without rows of its own (Celery) needs an end.
    """
    if STAMPS is None:
        return
    started = time.time()
    line = f"{key} {started!r} {time.time()!r}\n".encode()
    descriptor = os.open(STAMPS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read(path: Path) -> list[tuple[str, float, float]]:
    """Every stamp in the file, in the order written: (key, started, finished)."""
    if not path.exists():
        return []
    return [
        (key, float(started), float(finished))
        for key, started, finished in (line.split() for line in path.read_text().splitlines())
    ]
