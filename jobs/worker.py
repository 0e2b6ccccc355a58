"""One worker's loop: claim a runnable job, perform it, repeat; sleep when there is none.

Knows nothing of HTTP, the admin or the command line. Any number of workers, on any
number of hosts, may run against the same database: each claim is a single statement that
only one of them can win (see `jobs.backends`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import FrameType
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS

from jobs import clock
from jobs.backends import backend_for
from jobs.identity import process_identity, worker_identity
from jobs.job_thread import JobThread
from jobs.lease import LeaseKeeper
from jobs.models import Job, JobQuerySet
from jobs.models import Worker as WorkerRow
from jobs.outage import CONNECTION_ERRORS, Outage, close_broken_connections
from jobs.registry import job_models
from jobs.resources import resident_memory_mb

logger = logging.getLogger("jobs.worker")
T = TypeVar("T")

PAUSE_SIGNAL = signal.SIGUSR2
RESUME_SIGNAL = signal.SIGCONT
# How often the main thread looks up from a running job (timeouts, grace, signals).
WATCH_INTERVAL = 0.05

EXIT_OK = 0
EXIT_RECYCLE = 3  # please start a fresh worker: a job timed out, or a --max-* limit was hit
EXIT_INTERRUPTED = 130
# Rows of workers silent for this long are deleted; until then the admin shows them stale.
DEAD_WORKER_RETENTION = timedelta(hours=1)
# Finished rows deleted per model per heartbeat, and the pause once none are left to delete.
PRUNE_BATCH = 500
PRUNE_PAUSE_SECONDS = 600


class Worker:
    """Serves `queues` in order of precedence (all queues if None) from every job model.

    Within one queue, job models take turns (round robin), so a flood of one job type
    cannot starve another; within one model, higher priority first, then oldest `run_at`.
    """

    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        models: Sequence[type[Job]] | None = None,
        interval: float = 1.0,
        burst: bool = False,
        grace: float = 30.0,
        max_jobs: int | None = None,
        max_memory_mb: float | None = None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self.queues = list(queues) if queues else None
        self.models = list(models if models is not None else job_models())
        self.interval = interval
        self.burst = burst
        self.grace = grace
        self.max_jobs = max_jobs
        self.max_memory_mb = max_memory_mb
        self.using = using
        self.name = process_identity()
        self.performed = 0
        self.exit_code = EXIT_OK
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._paused = threading.Event()
        self._first_model = 0  # whose turn it is to be asked first, for round robin
        self._backend = backend_for(using)
        self._outage = Outage("serving jobs")  # the main thread: registering, rescuing, claiming
        self._next_prune = 0.0  # monotonic time of the next pruning pass

    def run(self) -> int:
        """Work until stopped (or, with `burst`, until nothing is runnable). Returns jobs performed.

        Sets `exit_code`: EXIT_OK, EXIT_RECYCLE (a job timed out, or --max-jobs or
        --max-memory was reached: start a fresh process) or EXIT_INTERRUPTED. While it runs,
        the worker keeps its `Worker` row's heartbeat and its job's lease fresh, and rescues
        other workers' orphaned jobs.
        """
        previous = self._install_signal_handlers()
        self._while_reachable(self._register)
        logger.info(
            "worker %s serving %s from %d job model(s): %s%s",
            self.name,
            ", ".join(self.queues) if self.queues else "all queues",
            len(self.models),
            ", ".join(model._meta.label for model in self.models),
            " (until drained)" if self.burst else "",
        )
        job_thread = JobThread()
        try:
            with LeaseKeeper(on_beat=self._housekeeping) as leases:
                self._leases = leases
                self._while_reachable(lambda: self._rescue(clock.now()))
                self._serve(leases, job_thread)
        finally:
            job_thread.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._mark_stopped()
        logger.info("worker %s stopped after %d job(s)", self.name, self.performed)
        return self.performed

    def stop(self) -> None:
        """Stop claiming; let the job in hand finish within the grace period. Signal-safe."""
        self._stop.set()

    def abort(self) -> None:
        """Stop now: hand the job in hand back to the queue unfinished. Signal-safe."""
        self._abort.set()
        self._stop.set()

    def pause(self) -> None:
        """Stop claiming until `resume()`; the job in hand goes on."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def claim_next(self) -> Job | None:
        """Claim one runnable job: first queue first; within a queue, job models in turn.

        The model after the one that supplied the last job is asked first next time.
        """
        now = clock.now()
        count = len(self.models)
        for queue in self.queues or [None]:
            for offset in range(count):
                index = (self._first_model + offset) % count
                job = self._backend.claim(
                    self.models[index], queue=queue, worker=worker_identity(), now=now
                )
                if job is not None:
                    self._first_model = (index + 1) % count
                    return job
        return None

    def _serve(self, leases: LeaseKeeper, job_thread: JobThread) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(self.interval)
                continue
            job = self._while_reachable(self.claim_next)
            if job is None:
                if self.burst:
                    return
                self._stop.wait(self.interval)
                continue
            leases.hold(job)
            try:
                finished = self._perform(job, job_thread)
            finally:
                leases.release(job)
            self.performed += 1
            close_broken_connections()
            if not finished or self._should_recycle():
                return

    def _while_reachable(self, call: Callable[[], T]) -> T | None:
        """Call until the database answers (None if stopped first): outages are waited out."""
        while not self._stop.is_set():
            try:
                result = call()
            except CONNECTION_ERRORS as exc:
                self._stop.wait(self._outage.failed(exc))
            else:
                self._outage.succeeded()
                return result
        return None

    def _perform(self, job: Job, job_thread: JobThread) -> bool:
        """Run `job` on the job thread and watch it; False if the thread had to be given up.

        Gives it up when the job overruns its timeout (recorded as a failure, then the
        process recycles) or outlives the shutdown grace period (handed back to the queue).
        """
        began = time.monotonic()
        grace_ends = None
        job_thread.perform(job)
        while not job_thread.wait(WATCH_INTERVAL):
            now = time.monotonic()
            if self._stop.is_set() and grace_ends is None:
                grace_ends = now + self.grace
                logger.info("waiting up to %.0fs for %s to finish", self.grace, job.label)
            if self._abort.is_set() or (grace_ends is not None and now >= grace_ends):
                job._hand_back()
                self.exit_code = EXIT_INTERRUPTED if self._abort.is_set() else EXIT_OK
                return False
            if job.timeout is not None and now - began >= job.timeout:
                job._time_out(began, job_thread.stack())
                logger.warning("recycling the worker: %s left its job thread stuck", job.label)
                self.exit_code = EXIT_RECYCLE
                return False
        return True

    def _should_recycle(self) -> bool:
        """--max-jobs and --max-memory: leave between jobs so a fresh process takes over."""
        if self.max_jobs is not None and self.performed >= self.max_jobs:
            reason = f"performed {self.performed} job(s) (--max-jobs {self.max_jobs})"
        elif self.max_memory_mb is not None and resident_memory_mb() > self.max_memory_mb:
            reason = f"holds {resident_memory_mb():.0f} MB (--max-memory {self.max_memory_mb:.0f})"
        else:
            return False
        logger.info("recycling the worker: it %s", reason)
        self.exit_code = EXIT_RECYCLE
        return True

    def _mark_stopped(self) -> None:
        try:
            WorkerRow.objects.filter(name=self.name).update(
                state=WorkerRow.State.STOPPED,
                stopped_at=clock.now(),
                jobs_in_flight=[],
                jobs_performed=self.performed,
            )
        except CONNECTION_ERRORS as exc:
            logger.warning("could not mark worker %s stopped: %s", self.name, exc)

    def _register(self) -> None:
        now = clock.now()
        WorkerRow.objects.update_or_create(
            name=self.name,
            defaults={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": ",".join(self.queues or []),
                "state": WorkerRow.State.RUNNING,
                "started_at": now,
                "last_heartbeat_at": now,
                "stopped_at": None,
                "jobs_in_flight": [],
                "jobs_performed": 0,
            },
        )

    def _housekeeping(self) -> None:
        """Each heartbeat: say we are alive, rescue orphans, forget long-dead workers."""
        now = clock.now()
        WorkerRow.objects.filter(name=self.name).update(
            last_heartbeat_at=now,
            jobs_in_flight=[job.label for job in self._leases.held()],
            jobs_performed=self.performed,
        )
        self._rescue(now)
        WorkerRow.objects.filter(last_heartbeat_at__lt=now - DEAD_WORKER_RETENTION).delete()
        self._prune()

    def _prune(self) -> None:
        """One batch per model per heartbeat while a backlog lasts, then a pause.

        Small enough that a heartbeat is never late enough to let a lease run out.
        """
        if time.monotonic() < self._next_prune:
            return
        backlog = False
        for model in self.models:
            pruned = JobQuerySet(model=model, using=self.using).prune(
                model.retention_policy(), batch=PRUNE_BATCH
            )
            backlog |= pruned == PRUNE_BATCH
        if not backlog:
            self._next_prune = time.monotonic() + PRUNE_PAUSE_SECONDS

    def _rescue(self, now: datetime) -> None:
        for model in self.models:
            if rescued := JobQuerySet(model=model, using=self.using).rescue(now):
                logger.warning(
                    "rescued %d %s job(s) whose worker stopped renewing its lease",
                    rescued,
                    model._meta.label,
                )

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        handlers = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            PAUSE_SIGNAL: self._on_pause_signal,
            RESUME_SIGNAL: self._on_pause_signal,
        }
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set() and signum == signal.SIGINT:
            logger.info("second SIGINT: handing the job in hand back and stopping now")
            self.abort()
            return
        logger.info(
            "%s received: no new jobs; the job in hand has %.0fs to finish",
            signal.Signals(signum).name,
            self.grace,
        )
        self.stop()

    def _on_pause_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == PAUSE_SIGNAL:
            logger.info("paused (SIGUSR2): no new jobs until SIGCONT")
            self.pause()
        else:
            logger.info("resumed (SIGCONT)")
            self.resume()
