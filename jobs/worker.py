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
from collections.abc import Sequence
from datetime import datetime, timedelta
from types import FrameType

from django.db import DEFAULT_DB_ALIAS, connections

from jobs import clock
from jobs.backends import backend_for
from jobs.identity import process_identity, worker_identity
from jobs.lease import LeaseKeeper
from jobs.models import Job, JobQuerySet
from jobs.models import Worker as WorkerRow
from jobs.registry import job_models

logger = logging.getLogger("jobs.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Rows of workers silent for this long are deleted; until then the admin shows them stale.
DEAD_WORKER_RETENTION = timedelta(hours=1)


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
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self.queues = list(queues) if queues else None
        self.models = list(models if models is not None else job_models())
        self.interval = interval
        self.burst = burst
        self.using = using
        self.performed = 0
        self._stop = threading.Event()
        self._first_model = 0  # whose turn it is to be asked first, for round robin
        self._backend = backend_for(using)
        self.name = process_identity()

    def run(self) -> int:
        """Work until stopped (or, with `burst`, until nothing is runnable). Returns jobs performed.

        In the main thread, SIGTERM and SIGINT stop the loop after the job in hand; a
        second SIGINT interrupts that job (it stays running until its lease runs out and
        it is rescued). While it runs, the worker keeps its `Worker` row's heartbeat and its
        job's lease fresh, and rescues other workers' orphaned jobs.
        """
        previous = self._install_signal_handlers()
        self._register()
        logger.info(
            "worker %s serving %s from %d job model(s)%s",
            self.name,
            ", ".join(self.queues) if self.queues else "all queues",
            len(self.models),
            " until drained" if self.burst else "",
        )
        try:
            with LeaseKeeper(on_beat=self._housekeeping) as leases:
                self._leases = leases
                self._rescue(clock.now())
                self._serve(leases)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            WorkerRow.objects.filter(name=self.name).update(
                state=WorkerRow.State.STOPPED,
                stopped_at=clock.now(),
                jobs_in_flight=[],
                jobs_performed=self.performed,
            )
        logger.info("worker %s stopped after %d job(s)", self.name, self.performed)
        return self.performed

    def _serve(self, leases: LeaseKeeper) -> None:
        while not self._stop.is_set():
            job = self.claim_next()
            if job is not None:
                leases.hold(job)
                try:
                    job._execute()
                finally:
                    leases.release(job)
                self.performed += 1
                self._close_broken_connections()
            elif self.burst:
                break
            else:
                self._stop.wait(self.interval)

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

    def _rescue(self, now: datetime) -> None:
        for model in self.models:
            if rescued := JobQuerySet(model=model, using=self.using).rescue(now):
                logger.warning(
                    "rescued %d %s job(s) whose worker stopped renewing its lease",
                    rescued,
                    model._meta.label,
                )

    def stop(self) -> None:
        """Finish the job in hand, then leave `run()`. Safe from signal handlers and threads."""
        self._stop.set()

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

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.info("%s received: stopping after the job in hand", signal.Signals(signum).name)
        self.stop()

    def _close_broken_connections(self) -> None:
        """Drop connections a job left unusable, so the next claim reconnects.

        Only after an error: Django's close_old_connections() would also close healthy
        connections when CONN_MAX_AGE is 0, costing a reconnect per job.
        """
        for connection in connections.all(initialized_only=True):
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
