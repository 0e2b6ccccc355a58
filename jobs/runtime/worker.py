"""One worker process's loop: claim runnable jobs for its free threads, perform, repeat.

Knows nothing of HTTP, the admin or the command line. Any number of workers, on any
number of hosts, may run against the same database: each claim is a single statement that
only one of them can win (see `jobs.db`). The main thread claims and keeps time; the
jobs run on job threads (`jobs.runtime.job_thread`), a lease keeper renews their leases
(`jobs.lease`), and on PostgreSQL a listener wakes the idle worker (`jobs.runtime.listener`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from types import FrameType
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS

from jobs import execution, timesource
from jobs.conf import listen_using, network_timeout
from jobs.cron.clock import Clock
from jobs.cron.schedules import configured_schedules
from jobs.db import engine_for
from jobs.db.network import bound_silence
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.db.wakeup import Hint
from jobs.identity import process_identity
from jobs.lease import LeaseKeeper
from jobs.models import Job
from jobs.models import Worker as WorkerRow
from jobs.models.discovery import served_models
from jobs.models.worker import clock_offset
from jobs.monitoring import tally
from jobs.runtime.claims import Claims
from jobs.runtime.doorbell import Doorbell
from jobs.runtime.housekeeping import Housekeeping
from jobs.runtime.job_thread import JobThread
from jobs.runtime.listener import Listener
from jobs.runtime.outcomes import Outcomes
from jobs.runtime.resources import ProcessMemory

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Jobs a `runjobs` process runs at once unless told otherwise: enough that the outcomes of
# one claim's worth of jobs share a commit and a slow job does not hold up the queue, few
# enough to keep a process to 13 connections (see `jobs.runtime.budget`). Sidekiq and
# GoodJob default to 5, Oban to 10; measured in docs/benchmarks.md.
DEFAULT_THREADS = 10
PAUSE_SIGNAL = signal.SIGUSR2
RESUME_SIGNAL = signal.SIGCONT
# The shortest idle sleep when a pending row is already due but was not claimable (another
# worker holds it mid-claim): long enough not to spin, short enough not to be noticed.
MIN_IDLE_WAIT = 0.01

EXIT_OK = 0
EXIT_RECYCLE = 3  # please start a fresh worker: a job timed out, or a --max-* limit was hit
EXIT_INTERRUPTED = 130
# The clock writes Worker.clock_ticked_at at least this often, slot or not.
CLOCK_REPORT_SECONDS = 30.0


class WorkerLoop:
    """Serves `queues` in order of precedence (all queues if None) from every job model.

    Runs up to `threads` jobs at once. Within one queue, higher priority first across job
    models, then oldest `run_at`; at equal priority the models take turns (round robin), so
    a flood of one job type cannot starve another.
    """

    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        models: Sequence[type[Job]] | None = None,
        threads: int = 1,
        interval: float = 1.0,
        burst: bool = False,
        grace: float = 30.0,
        max_jobs: int | None = None,
        max_memory_mb: float | None = None,
        supervisor: str | None = None,
        using: str = DEFAULT_DB_ALIAS,
        run_clock: bool = True,
    ) -> None:
        self.queues = list(queues) if queues else None
        self.models = list(models if models is not None else served_models())
        self.threads = threads
        self.interval = interval
        self.burst = burst
        self.grace = grace
        self.max_jobs = max_jobs
        self._memory = ProcessMemory(max_memory_mb)
        self.supervisor = supervisor
        self.using = using
        self.name = process_identity()
        self.performed = 0
        self.exit_code = EXIT_OK
        self.stop_reason = ""  # on its row once stopped: what made it leave
        self._recycled_for_memory = False
        # Plain flags, not Events: signal handlers set them (see jobs.runtime.doorbell).
        self._stopping = False
        self._aborting = False
        self._paused = False
        self._wakeup = Doorbell()  # rung by finished jobs, wake-ups and signals
        self._idle: list[JobThread] = []
        self._busy: list[JobThread] = []
        self._outcomes = Outcomes(using)  # performed, not yet written
        self._given_up: list[JobThread] = []  # stuck on a job the worker no longer waits for
        self._grace_ends: float | None = None
        self._parent_pid = os.getppid() if supervisor else None
        engine_for(using)  # refuse an unsupported database now, not at the first claim
        bound_silence(using, network_timeout())  # a cut is an outage in seconds, not hours
        self._outage = Outage("serving jobs")  # the main thread: registering, rescuing, claiming
        # The clock (schedules and heartbeats); a burst worker only drains.
        schedules = configured_schedules() if run_clock and not burst else []
        self._scheduler = Clock(schedules) if schedules else None
        self._chores = Housekeeping(self.models, using=using, clock=self._scheduler is not None)
        self._clock_due = 0.0  # monotonic time of the next tick
        self._clock_reported = -math.inf  # monotonic time clock_ticked_at was last written
        # Which models to ask, by how much, and which are known empty (jobs.runtime.claims).
        self._claims = Claims(self.models, queues=self.queues, interval=interval, using=using)

    def run(self) -> int:
        """Work until stopped (or, with `burst`, until nothing is runnable). Returns jobs performed.

        Sets `exit_code`: EXIT_OK, EXIT_RECYCLE (a job timed out, or --max-jobs or
        --max-memory was reached: start a fresh process) or EXIT_INTERRUPTED. While it runs,
        the worker keeps its `Worker` row's heartbeat and its jobs' leases fresh, and rescues
        other workers' orphaned jobs.
        """
        previous = self._install_signal_handlers()
        unbatch = tally.batch_flushes()
        # From here on "now" is the database's, whatever this host's clock says.
        self._while_reachable(partial(timesource.synchronise, self.using, announce=True))
        self._while_reachable(
            partial(
                WorkerRow.register,
                self.name,
                queues=self.queues,
                threads=self.threads,
                supervisor=self.supervisor,
            )
        )
        logger.info(
            "worker %s (%d thread(s)) serving %s from %d job model(s): %s%s",
            self.name,
            self.threads,
            ", ".join(self.queues) if self.queues else "all queues",
            len(self.models),
            ", ".join(model._meta.label for model in self.models),
            " (until drained)" if self.burst else "",
        )
        self._idle = [
            JobThread(f"jobs-{number}", on_done=self._wakeup.ring)
            for number in range(1, self.threads + 1)
        ]
        try:
            with (
                LeaseKeeper(  # a killed job is recorded and recycled by `_enforce_deadlines`
                    on_beat=self._housekeeping,
                    on_kill=lambda _job: self._wakeup.ring(),
                    using=self.using,
                ) as leases,
                self._listener(),
            ):
                self._leases = leases
                self._while_reachable(lambda: self._chores.rescue(timesource.now()))
                self._serve()
        finally:
            self._outcomes.abandon()  # if any are left: they were never written
            for job_thread in self._idle + self._busy + self._given_up:
                job_thread.close()
            for job_thread in self._idle:  # let each report its last outcome before we go
                job_thread.join(timeout=self.grace)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._wakeup.close()
            if self._outage.ongoing:  # each write would wait out the network timeout
                logger.warning(
                    "leaving while the database is unreachable: the last metrics are not "
                    "saved, and the worker's row goes stale instead of stopped"
                )
            else:
                tally.flush(using=self.using)
                WorkerRow.mark_stopped(
                    self.name,
                    jobs_performed=self.performed,
                    stop_reason=self.stop_reason[:255],
                    for_memory=self._recycled_for_memory,
                )
            unbatch()
        logger.info("worker %s stopped after %d job(s)", self.name, self.performed)
        return self.performed

    def stop(self) -> None:
        """Stop claiming; let the jobs in hand finish within the grace period. Signal-safe."""
        self._stopping = True
        self._wakeup.ring()

    def abort(self) -> None:
        """Stop now: hand the jobs in hand back to the queue unfinished. Signal-safe."""
        self._aborting = True
        self.stop()

    def pause(self) -> None:
        """Stop claiming until `resume()`; the jobs in hand go on."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wakeup.ring()

    def claim(self, limit: int = 1) -> list[Job]:
        """Claim up to `limit` runnable jobs: first queue first; within a queue, by priority
        across job models, the models taking turns at equal priority (`jobs.runtime.claims`).

        Tables known to be empty are not asked. A burst worker about to leave (nothing
        claimed, nothing in hand) asks every table once more: it hears no wake-ups, and a
        job it ran may have enqueued another.
        """
        claimed = self._claims.claim(limit, worker=self.name, now=timesource.now())
        if not claimed and self.burst and not self._busy and self._claims.forget():
            claimed = self._claims.claim(limit, worker=self.name, now=timesource.now())
        return claimed

    def _serve(self) -> None:
        while True:
            self._wakeup.clear()
            self._collect_finished()
            self._enforce_deadlines()
            self._tick_clock()
            if self._stopping:
                self._outcomes.write_before_leaving(self._outage)
                if not self._busy:
                    return
                self._wakeup.wait(self._time_to_deadline(self.interval))
                continue
            drained = False
            wanted = self._wanted()
            if wanted and not self._paused:
                jobs = self._while_reachable(
                    partial(self._outcomes.write_with, partial(self.claim, wanted))
                )
                for job in jobs or []:
                    self._dispatch(job)
                drained = jobs is not None and len(jobs) < wanted
                if not drained:
                    continue
            elif self._outcomes:
                self._while_reachable(self._outcomes.write)
            if self.burst and drained and not self._busy and not self._claims.held_back():
                self.stop_reason = "drained the queues (--burst)"
                return
            self._wakeup.wait(self._idle_wait(drained))

    def _wanted(self) -> int:
        """How many jobs to claim now: one per free thread, never past --max-jobs."""
        wanted = len(self._idle)
        if self.max_jobs is not None:
            wanted = min(wanted, self.max_jobs - self.performed - len(self._busy))
        return max(wanted, 0)

    def _dispatch(self, job: Job) -> None:
        job_thread = self._idle.pop()
        self._busy.append(job_thread)
        self._leases.hold(job)
        job_thread.perform(job)

    def _collect_finished(self) -> None:
        """Take the outcomes of the threads whose jobs have finished, to be written with the
        next claim, and free those threads; leave if a limit says so.

        A finished job's lease is let go at once: from here to its outcome's commit is one
        turn of this loop, and a lease the database never sees renewed during an outage runs
        out the same either way.
        """
        finished = [job_thread for job_thread in self._busy if job_thread.finished()]
        for job_thread in finished:
            self._busy.remove(job_thread)
            outcome = job_thread.collect()
            self._leases.release(outcome.job)
            self._outcomes.add(outcome)
            self._claims.freed(type(outcome.job))
            self._idle.append(job_thread)
        self.performed += len(finished)
        if self._stopping:
            return
        if self._parent_pid is not None and os.getppid() != self._parent_pid:
            logger.warning("worker %s: its supervisor has gone; stopping", self.name)
            self.stop_reason = "its supervisor had gone"
            self.stop()
        elif finished and self._should_recycle():
            self.stop()

    def _enforce_deadlines(self) -> None:
        """Give up threads whose job overran its timeout or the shutdown's grace period.

        A timed-out job is recorded as failed and the process recycles; a job still running
        when the grace period ends (or at once, on abort) is handed back to the queue.
        """
        now = time.monotonic()
        if self._stopping and self._grace_ends is None and self._busy:
            self._grace_ends = now + self.grace
            for job_thread in self._busy:
                job_thread.job.request_shutdown()
            labels = ", ".join(t.job.label for t in self._busy)
            waiting = "waiting up to %gs for %d job(s) to finish: %s"
            logger.info(waiting, self.grace, len(self._busy), labels)
        for job_thread in list(self._busy):
            job = job_thread.job
            if self._aborting or (self._grace_ends is not None and now >= self._grace_ends):
                self._give_up(job_thread, partial(execution.hand_back, job))
                if self._aborting:
                    self.exit_code = EXIT_INTERRUPTED
            elif (killed := getattr(job, "_kill_heard", False)) or (
                job.timeout is not None and now - job_thread.began >= job.timeout
            ):  # an operator's "Kill" (`jobs.lease`), or a timeout: record, then recycle
                ending = execution.kill if killed else execution.time_out
                stack = job_thread.stack()
                self._give_up(job_thread, partial(ending, job, job_thread.began, stack))
                why = "was killed" if killed else "left its job thread stuck"
                logger.warning("recycling the worker: %s %s", job.label, why)
                self.exit_code = EXIT_RECYCLE
                self.stop_reason = f"recycled: {job.label} {why}"
                self.stop()

    def _give_up(self, job_thread: JobThread, record: Callable[[], object]) -> None:
        """Leave a thread to its fate after recording what became of its job.

        If the database is away, the job stays running until its lease runs out and it is
        rescued, like a job whose worker was killed.
        """
        job = job_thread.job
        try:
            record()
        except CONNECTION_ERRORS as exc:
            logger.warning("could not record what became of %s (%s)", job.label, exc)
        self._busy.remove(job_thread)
        self._given_up.append(job_thread)
        self._leases.release(job)

    def _time_to_deadline(self, cap: float) -> float:
        """Seconds until the next job timeout or the end of the grace period, at most `cap`."""
        now = time.monotonic()
        deadlines = [t.began + t.job.timeout for t in self._busy if t.job.timeout is not None]
        if self._grace_ends is not None:
            deadlines.append(self._grace_ends)
        if self._scheduler is not None:
            deadlines.append(self._clock_due)
        return max(0.0, min([cap, *(deadline - now for deadline in deadlines)]))

    def _idle_wait(self, drained: bool) -> float:
        """How long to sleep: until woken, a deadline, or (drained) the next scheduled job.

        Capped at the poll interval, so a lost wake-up costs at most one interval. The next
        job's `run_at` is one statement for every model, which also ends each empty model's
        mark at its next row's `run_at`.
        """
        if not drained:
            return self._time_to_deadline(self.interval)
        due = self._while_reachable(self._claims.next_due)
        if due is None:
            return self._time_to_deadline(self.interval)
        until_due = (due - timesource.now()).total_seconds()
        return self._time_to_deadline(min(self.interval, max(until_due, MIN_IDLE_WAIT)))

    def _tick_clock(self) -> None:
        """Enqueue the schedules' due slots, and say (at least every CLOCK_REPORT_SECONDS)
        that this worker's clock is alive, so health checks notice one that stopped."""
        if self._scheduler is None or self._stopping or time.monotonic() < self._clock_due:
            return
        now = timesource.now()
        if self._while_reachable(partial(self._scheduler.tick, now)) is None:
            return
        if time.monotonic() - self._clock_reported >= CLOCK_REPORT_SECONDS:
            self._while_reachable(
                partial(WorkerRow.objects.filter(name=self.name).update, clock_ticked_at=now)
            )
            self._clock_reported = time.monotonic()
        until_slot = self._scheduler.seconds_to_next_slot(now)
        self._clock_due = time.monotonic() + min(until_slot, CLOCK_REPORT_SECONDS)

    def _listener(self) -> contextlib.AbstractContextManager:
        """Wake-ups from the database, where it sends them; a burst worker only drains."""
        if self.burst or not engine_for(self.using).wakes_workers:
            return contextlib.nullcontext()

        def on_wake(hints: list[Hint]) -> None:  # on the listener's thread
            self._claims.hear(hints)
            self._wakeup.ring()

        def on_stack_request() -> None:  # the admin asked where the running jobs are
            self._leases.beat_soon()

        hear = {"on_wake": on_wake, "on_stack_request": on_stack_request}
        return Listener(using=listen_using(self.using), queues=self.queues, **hear)

    def _while_reachable(self, call: Callable[[], T]) -> T | None:
        """Call until the database answers (None if stopped first): outages are waited out."""
        while not self._stopping:
            try:
                result = call()
            except CONNECTION_ERRORS as exc:
                self._sleep_unless_stopped(self._outage.failed(exc))
            else:
                self._outage.succeeded()
                return result
        return None

    def _sleep_unless_stopped(self, seconds: float) -> None:
        """Wait out an outage's backoff, returning early if the worker is told to stop."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            self._wakeup.wait(left)
            self._wakeup.clear()

    def _should_recycle(self) -> bool:
        """--max-jobs and --max-memory: leave between jobs so a fresh process takes over."""
        if self.max_jobs is not None and self.performed >= self.max_jobs:
            reason = f"performed {self.performed} job(s) (--max-jobs {self.max_jobs})"
        elif reason := self._memory.over_limit():
            self._recycled_for_memory = True
        else:
            return False
        logger.info("recycling the worker: it %s", reason)
        self.exit_code = EXIT_RECYCLE
        self.stop_reason = f"recycled: {reason}"
        return True

    def _housekeeping(self) -> None:
        """Each heartbeat (after the lease keeper read the database's clock): say we are alive
        and how far off this host's clock and its memory are, do the chores, save the metrics."""
        now = timesource.now()
        WorkerRow.objects.filter(name=self.name).update(
            last_heartbeat_at=now,
            jobs_in_flight=[job.label for job in self._leases.held()],
            jobs_performed=self.performed,
            clock_offset=clock_offset(),
            **self._memory.sample(now),
        )
        self._chores.rescue(now)
        self._chores.forget_dead_workers(now)
        self._chores.prune(now)
        tally.flush(using=self.using)

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
        if self._stopping and signum == signal.SIGINT:
            logger.info("second SIGINT: handing the job in hand back and stopping now")
            self.abort()
            return
        name = signal.Signals(signum).name
        logger.info("%s received: no new jobs; the job in hand has %gs to finish", name, self.grace)
        self.stop_reason = self.stop_reason or f"stopped by {name}"
        self.stop()

    def _on_pause_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == PAUSE_SIGNAL:
            logger.info("paused (SIGUSR2): no new jobs until SIGCONT")
            self.pause()
        else:
            logger.info("resumed (SIGCONT)")
            self.resume()
