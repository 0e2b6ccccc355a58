"""The threads a worker performs jobs on, so its main thread stays free to claim and keep time.

Python cannot stop a thread. The worker's main thread therefore only watches these: when a
job overruns its timeout or a shutdown's grace period, the main thread records the outcome
(or hands the job back), gives the thread up, and the process exits, taking the stuck thread
with it. The threads are daemons for that reason, and each keeps one database connection
for all the jobs it performs.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from django.db import connections

from jobs import execution
from jobs.db.outage import CONNECTION_ERRORS, close_broken_connections

logger = logging.getLogger(__name__)


class JobThread:
    """One job at a time: `perform()` hands it over, `on_done` says when it has finished."""

    def __init__(self, name: str, *, on_done: Callable[[], None]) -> None:
        self.name = name
        self.job: Any = None  # the job in hand, until the worker collects it
        self.began = 0.0  # monotonic time the job in hand was handed over
        self._on_done = on_done
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def perform(self, job: Any) -> None:
        """Start `execution.execute(job)` on the thread; `finished()` tells when it is recorded."""
        self.job = job
        self.began = time.monotonic()
        self._done.clear()
        self._inbox.put(job)

    def finished(self) -> bool:
        return self._done.is_set()

    def collect(self) -> Any:
        """Take back the finished job, leaving the thread free for the next one."""
        job, self.job = self.job, None
        return job

    def stack(self) -> str:
        """Where the job is right now: what a timeout reports, to show where it hung."""
        frame = sys._current_frames().get(self._thread.ident)
        return "".join(traceback.format_stack(frame)) if frame else "(thread has ended)"

    def close(self) -> None:
        """Let the thread end after the job in hand (a stuck one ends with the process)."""
        self._inbox.put(None)

    def _loop(self) -> None:
        try:
            while (job := self._inbox.get()) is not None:
                try:
                    execution.execute(job)
                except CONNECTION_ERRORS as exc:
                    logger.warning(
                        "could not record the outcome of %s (%s); it will be rescued when its "
                        "lease runs out",
                        job.label,
                        exc,
                    )
                except BaseException:
                    # perform() raised SystemExit or KeyboardInterrupt: already recorded on
                    # the row; on this thread it must not end the worker.
                    logger.warning("%s raised %s", job.label, sys.exc_info()[0].__name__)
                finally:
                    close_broken_connections()
                    self._done.set()
                    self._on_done()
        finally:
            connections.close_all()
