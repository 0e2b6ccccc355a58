"""The thread a worker performs jobs on, so its main thread stays free to keep time.

Python cannot stop a thread. The worker's main thread therefore only waits on this one:
when a job overruns its timeout or a shutdown's grace period, the main thread records the
outcome (or hands the job back) and the process exits, taking the stuck thread with it.
The thread is a daemon for that reason, and it keeps one database connection for all the
jobs it performs.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import traceback

from django.db import connections

from jobs.outage import CONNECTION_ERRORS, close_broken_connections

logger = logging.getLogger("jobs.worker")


class JobThread:
    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jobs-job", daemon=True)
        self._thread.start()

    def perform(self, job) -> None:
        """Start `job._execute()` on the thread; `wait()` tells when it has finished."""
        self._done.clear()
        self._inbox.put(job)

    def wait(self, timeout: float) -> bool:
        """True once the job handed to `perform()` has finished (its outcome recorded)."""
        return self._done.wait(timeout)

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
                    job._execute()
                except CONNECTION_ERRORS as exc:
                    logger.warning(
                        "could not record the outcome of %s (%s); it will be rescued when its "
                        "lease runs out",
                        job.label,
                        exc,
                    )
                except BaseException:
                    # perform() raised SystemExit or KeyboardInterrupt: already recorded on
                    # the row; on this thread it must not end the worker's only job thread.
                    logger.warning("%s raised %s", job.label, sys.exc_info()[0].__name__)
                finally:
                    close_broken_connections()
                    self._done.set()
        finally:
            connections.close_all()
