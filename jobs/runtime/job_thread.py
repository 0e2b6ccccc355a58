"""The threads a worker performs jobs on, so its main thread stays free to claim and keep time.

Python cannot stop a thread. The worker's main thread therefore only watches these: when a
job overruns its timeout or a shutdown's grace period, the main thread records the outcome
(or hands the job back), gives the thread up, and the process exits, taking the stuck thread
with it. The threads are daemons for that reason, and each keeps one database connection
for all the jobs it performs.

A job thread does not write its job's outcome: it hands it to the worker's main thread,
which writes the outcomes of every thread that finished since its last claim in the same
transaction as its next claim (`jobs.execution.record`). The thread is free for its next
job as soon as it has handed the outcome over; before taking it, it waits to hear whether
the outcome was written, then logs it and sends the lifecycle signals.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

from jobs import execution
from jobs.db.outage import CONNECTION_ERRORS, close_broken_connections
from jobs.joblog import stack_of
from jobs.runtime.resources import AttemptMemory

logger = logging.getLogger(__name__)


class JobThread:
    """One job at a time: `perform()` hands it over, `on_done` says when it has finished."""

    def __init__(self, name: str, *, on_done: Callable[[], None]) -> None:
        self.name = name
        self.job: Any = None  # the job in hand, until the worker collects its outcome
        self.began = 0.0  # monotonic time the job in hand was handed over
        self._on_done = on_done
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        # Set by this thread when its job has finished, taken by the worker's main thread:
        # a plain attribute (one store, atomic under the GIL) rather than an Event, since
        # nobody waits on it; the main thread looks when the doorbell (`on_done`) rings.
        self._outcome: execution.Outcome | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def perform(self, job: Any) -> None:
        """Start the attempt on the thread; `finished()` tells when its outcome is known."""
        self.job = job
        self.began = time.monotonic()
        self._inbox.put(job)

    def finished(self) -> bool:
        return self._outcome is not None

    def collect(self) -> execution.Outcome:
        """Take the finished attempt's outcome, to be recorded and settled by the caller,
        leaving the thread free for the next job."""
        outcome, self._outcome, self.job = self._outcome, None, None
        return outcome

    def stack(self) -> str:
        """Where the job is right now: what a timeout or a kill reports, to show where it
        hung (masked and bounded, as its page shows it)."""
        mask = self.job.mask if self.job is not None else str
        return stack_of(self._thread.ident, mask) or "(thread has ended)"

    def close(self) -> None:
        """Let the thread end after the job in hand (a stuck one ends with the process)."""
        self._inbox.put(None)

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the thread to end (after `close()`)."""
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while (job := self._inbox.get()) is not None:
                memory = AttemptMemory()
                memory.begin()
                outcome = execution.attempt(job)
                if outcome.started:  # what the attempt did to the process's memory
                    growth_kb, sites = memory.end()
                    outcome.changes["memory_growth_kb"] = growth_kb
                    if sites:
                        outcome.changes["log"] = f"{outcome.changes['log']}\n{sites}".lstrip()
                close_broken_connections()
                self._outcome = outcome
                self._on_done()
                self._report(outcome)
        finally:
            connections.close_all()

    def _report(self, outcome: execution.Outcome) -> None:
        """Once the worker has settled the outcome: log it and send the signals."""
        outcome.wait_until_settled()
        try:
            execution.report(outcome)
        except CONNECTION_ERRORS as exc:  # reading the row's state for the warning
            logger.warning("could not report on %s (%s)", outcome.job.label, exc)
        if outcome.exc is not None and not isinstance(outcome.exc, Exception):
            # perform() raised SystemExit or KeyboardInterrupt: recorded on the row like any
            # failure; on this thread it must not end the worker.
            logger.warning("%s raised %s", outcome.job.label, type(outcome.exc).__name__)
