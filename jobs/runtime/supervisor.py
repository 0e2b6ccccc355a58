"""`runjobs --processes P`: one parent keeping P worker processes alive (or, with
`--processes MIN-MAX`, as many as the queues need between the two: `jobs.runtime.autoscale`).

Threads share one interpreter lock, so CPU-bound jobs need processes; the supervisor gives a
team those without a second process manager. It forks the workers (so they start in
milliseconds, with Django already set up), restarts one that dies with a growing delay (a
worker that crashes on start cannot spin), restarts at once one that asks to be recycled
(`--max-jobs`, `--max-memory`, a timed-out job: exit status 3), and passes signals on so a
graceful shutdown stays graceful across the tree. The workers run in their own process group
so a Ctrl-C at the terminal reaches them only through the supervisor, once; a worker whose
supervisor disappears (SIGKILL) notices and stops on its own.

It owns one database connection, for its `Worker` row; the workers are its children there
too, so the admin shows the whole tree.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol, Self

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Sum

from jobs import backoff, timesource
from jobs.conf import heartbeat_interval
from jobs.db import close_before_fork
from jobs.db.outage import CONNECTION_ERRORS, Outage
from jobs.identity import process_identity
from jobs.models import Worker as WorkerRow
from jobs.models.discovery import served_models
from jobs.runtime.autoscale import (
    DECISIONS_KEPT,
    DEFAULT_SCALE_DOWN_AFTER,
    DEFAULT_SCALE_UP_AFTER,
    Autoscaler,
    Decision,
    check_interval,
    observe,
)
from jobs.runtime.doorbell import Doorbell
from jobs.runtime.resources import CpuMeter, ProcessMemory
from jobs.runtime.worker import (
    DEFAULT_THREADS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RECYCLE,
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    WorkerLoop,
)

logger = logging.getLogger(__name__)

FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
# A worker that ran this long before dying is taken to have been healthy: its next crash
# starts the restart delay from the beginning again.
HEALTHY_UPTIME = 30.0
PASSED_ON = (PAUSE_SIGNAL, RESUME_SIGNAL)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class EarlyStop:
    """SIGTERM and SIGINT while a process is still becoming a worker or a supervisor, before
    the runner's `run()` takes the signals over: remembered, and passed on to the runner
    once there is one (`hand_to`), so a stop asked for during start-up (a deploy, an
    autoscaler changing its mind) ends the process cleanly, exit 0, instead of killing it.

    A context manager, entered first thing; it puts the previous handlers back on exit.
    Main thread only (elsewhere it does nothing: Python runs signal handlers there).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._runner: _Stoppable | None = None
        self._previous: dict = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                signum: signal.signal(signum, self._on_stop) for signum in self.SIGNALS
            }
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def hand_to(self, runner: _Stoppable) -> bool:
        """From now on a stop goes to `runner`; True (and `runner.stop()` called) if one was
        asked for already."""
        self._runner = runner
        if self.received is not None:
            runner.stop()
        return self.received is not None

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            logger.info("%s received while starting: stopping", signal.Signals(signum).name)
        self.received = signum
        if self._runner is not None:
            self._runner.stop()


@dataclass
class _Slot:
    """One of the places a worker process fills; its process changes with each restart.
    Autoscaling keeps MAX slots, of which the `wanted` ones have a process."""

    number: int
    wanted: bool = True
    pid: int | None = None
    started: float = 0.0
    crashes: int = 0  # in a row, each after less than HEALTHY_UPTIME
    restart_at: float | None = None  # monotonic time to start its next process
    drained: bool = False  # --burst: its worker found nothing more to do


class Supervisor:
    def __init__(
        self,
        *,
        processes: int,
        worker_options: dict[str, Any],
        max_processes: int | None = None,
        scale_up_after: float = DEFAULT_SCALE_UP_AFTER,
        scale_down_after: float = DEFAULT_SCALE_DOWN_AFTER,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        """`processes` worker processes; with `max_processes`, from that many up to it, as
        `jobs.runtime.autoscale` decides after the two waits given."""
        most = max(processes, max_processes or processes)
        self.fewest, self.most = processes, most
        self.worker_options = worker_options
        self.using = using
        self.name = process_identity()
        self.exit_code = EXIT_OK
        self._stopping = False
        self._paused = False  # so that a worker started while paused starts paused
        self._wakeup = Doorbell()  # rung by signals: SIGCHLD, stop, pause
        self._slots = [_Slot(number, wanted=number <= processes) for number in range(1, most + 1)]
        self._outage = Outage("supervising")
        self._next_beat = 0.0
        self._memory = ProcessMemory()
        self._autoscaler = None
        if most > processes:
            threads = worker_options.get("threads", DEFAULT_THREADS)
            self._autoscaler = Autoscaler(
                processes, most, threads, up_after=scale_up_after, down_after=scale_down_after
            )
            self._check_every = check_interval(scale_up_after)
            self._next_check = time.monotonic() + self._check_every
            self._cpu = CpuMeter()
            self._decisions: list[dict] = []

    @property
    def processes(self) -> int:
        """Worker processes it keeps now."""
        return sum(slot.wanted for slot in self._slots)

    def run(self) -> int:
        """Start the workers and keep them running until stopped; returns the exit status.

        0, or 130 when a second SIGINT made the workers hand their jobs back at once. With
        `burst` among the worker options, returns once every worker has drained the queues.
        """
        previous = self._install_signal_handlers()
        logger.info(
            "supervisor %s starting %d worker process(es)%s of %d thread(s) each",
            self.name,
            self.processes,
            f" (up to {self.most} as the queues need)" if self._autoscaler else "",
            self.worker_options.get("threads", DEFAULT_THREADS),
        )
        try:
            self._beat(register=True)
            for slot in self._slots:
                if slot.wanted and not self._stopping:  # stopped while starting: no more
                    self._start(slot)
            while True:
                self._wakeup.clear()
                self._reap()
                if not self._live() and (self._stopping or self._drained()):
                    break
                if not self._stopping:
                    self._restart_due()
                    self._scale_if_due()
                if time.monotonic() >= self._next_beat:
                    self._beat()
                self._wakeup.wait(self._time_to_next_event())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._wakeup.close()
            self._mark_stopped()
        logger.info("supervisor %s stopped", self.name)
        return self.exit_code

    def stop(self) -> None:
        """Ask every worker to stop gracefully (SIGTERM); none is restarted. Signal-safe."""
        self._stopping = True
        self._signal_workers(signal.SIGTERM)
        self._wakeup.ring()

    def abort(self) -> None:
        """Make every worker hand its jobs back and exit now. Signal-safe."""
        self.exit_code = EXIT_INTERRUPTED
        self.stop()
        self._signal_workers(signal.SIGINT)  # after SIGTERM, a worker takes SIGINT as abort

    def _live(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.pid is not None]

    def _drained(self) -> bool:
        return all(slot.drained for slot in self._slots if slot.wanted)

    def _start(self, slot: _Slot) -> None:
        close_before_fork()
        pid = os.fork()
        if pid == 0:
            self._become_worker()
        slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        logger.info("supervisor %s started worker process %d (pid %d)", self.name, slot.number, pid)

    def _become_worker(self) -> None:
        """In the forked child: run a worker, then leave without returning into the parent."""
        status = 1
        try:
            # A SIGTERM the supervisor passes on before this worker's loop has its own
            # handlers must stop the worker, not the supervisor's copy in this process.
            with EarlyStop() as early:
                os.setpgid(0, 0)
                self._wakeup.close()  # the supervisor's; the worker has its own
                for signum in (signal.SIGCHLD, *PASSED_ON):
                    signal.signal(signum, signal.SIG_DFL)
                worker = WorkerLoop(**self.worker_options, supervisor=self.name, using=self.using)
                if self._paused:
                    worker.pause()
                if self._stopping:  # the signal came before `EarlyStop`, to the copy
                    worker.stop()
                early.hand_to(worker)
                worker.run()
            status = worker.exit_code
        except BaseException:
            logger.exception("worker process %d crashed", os.getpid())
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self) -> None:
        """Collect every worker that has exited and decide whether and when it restarts."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((slot for slot in self._slots if slot.pid == pid), None)
            if slot is not None:
                slot.pid = None
                self._after_exit(slot, pid, os.waitstatus_to_exitcode(wait_status))

    def _after_exit(self, slot: _Slot, pid: int, status: int) -> None:
        now = time.monotonic()
        lived = now - slot.started
        how = f"exited with status {status}" if status >= 0 else signal.Signals(-status).name
        if self._stopping:
            logger.info("worker process %d %s", slot.number, how)
        elif not slot.wanted:
            logger.info("worker process %d %s: one process fewer now", slot.number, how)
            self._note_scaled_down(pid)
        elif status == EXIT_OK and self.worker_options.get("burst"):
            slot.drained = True
        elif status in (EXIT_OK, EXIT_RECYCLE):
            logger.info(
                "worker process %d %s after %.1fs; starting a fresh one", slot.number, how, lived
            )
            slot.crashes = 0
            slot.restart_at = now
        else:
            slot.crashes = 1 if lived >= HEALTHY_UPTIME else slot.crashes + 1
            delay = backoff.delay(slot.crashes, first=FIRST_RESTART_DELAY, cap=MAX_RESTART_DELAY)
            logger.warning(
                "worker process %d died (%s) after %.1fs; restarting it in %.0fs",
                slot.number,
                how,
                lived,
                delay,
            )
            slot.restart_at = now + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            due = slot.restart_at is not None and slot.restart_at <= now
            if slot.wanted and slot.pid is None and due:
                self._start(slot)

    def _time_to_next_event(self) -> float:
        """Sleep until a restart or a heartbeat is due; signals and exits wake it earlier."""
        due = [self._next_beat, *(s.restart_at for s in self._slots if s.restart_at is not None)]
        if self._autoscaler is not None:
            due.append(self._next_check)
        return max(0.0, min(due) - time.monotonic())

    def _beat(self, *, register: bool = False) -> None:
        """Keep the supervisor's `Worker` row alive; a dead database only delays it."""
        self._next_beat = time.monotonic() + heartbeat_interval()
        try:
            timesource.synchronise()
            now = timesource.now()
            if register:
                WorkerRow.register(
                    self.name,
                    queues=self.worker_options.get("queues"),
                    threads=self.worker_options.get("threads", DEFAULT_THREADS),
                    supervisor=None,
                    processes=(self.fewest, self.most),
                )
            else:
                WorkerRow.objects.filter(name=self.name).update(
                    last_heartbeat_at=now,
                    jobs_performed=self._performed(),
                    processes_wanted=self.processes,
                    **self._memory.sample(now),
                )
        except CONNECTION_ERRORS as exc:
            self._outage.failed(exc)
        else:
            self._outage.succeeded()

    def _scale_if_due(self) -> None:
        """Ask the autoscaler, if there is one and a check is due; carry out what it decides.

        A database that cannot be reached decides nothing: the processes stay as they are.
        """
        if self._autoscaler is None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self._check_every
        live = {process_identity(slot.pid): slot.pid for slot in self._live() if slot.wanted}
        try:
            seen = observe(
                served_models(),
                self.worker_options.get("queues"),
                live,
                timesource.now(),
                self._autoscaler.up_after,
            )
        except CONNECTION_ERRORS as exc:
            self._outage.failed(exc)
            return
        decision = self._autoscaler.decide(self.processes, seen, self._cpu.busy())
        if decision is None:
            return
        if decision.after > decision.before:
            slot = next(slot for slot in self._slots if not slot.wanted)
            slot.wanted, slot.drained, slot.crashes = True, False, 0
            self._start(slot)
        elif decision.after < decision.before:
            slot = next(slot for slot in self._slots if slot.pid == decision.stop_pid)
            slot.wanted = False
            os.kill(slot.pid, signal.SIGTERM)
        self._record(decision)

    def _record(self, decision: Decision) -> None:
        """Log a scaling decision and keep it on the supervisor's row (the latest few)."""
        logger.info("autoscaling %d -> %d: %s", decision.before, decision.after, decision.reason)
        self._decisions = [*self._decisions, decision.as_row(timesource.now())][-DECISIONS_KEPT:]
        try:
            WorkerRow.objects.filter(name=self.name).update(
                processes_wanted=self.processes, scaling_decisions=self._decisions
            )
        except CONNECTION_ERRORS as exc:
            self._outage.failed(exc)

    def _note_scaled_down(self, pid: int) -> None:
        """Say on the stopped worker's row that it was not needed, rather than just SIGTERMed."""
        try:
            WorkerRow.objects.filter(name=process_identity(pid)).update(
                stop_reason="stopped by its supervisor: the queues needed one process fewer"
            )
        except CONNECTION_ERRORS as exc:
            self._outage.failed(exc)

    def _performed(self) -> int:
        """Jobs performed by every worker process this supervisor has started."""
        rows = WorkerRow.objects.filter(supervisor__name=self.name)
        return rows.aggregate(total=Sum("jobs_performed"))["total"] or 0

    def _mark_stopped(self) -> None:
        """The final count, once every worker has written its own (they have all exited)."""
        try:
            performed = self._performed()
        except CONNECTION_ERRORS as exc:
            logger.warning("could not count the jobs of supervisor %s: %s", self.name, exc)
            WorkerRow.mark_stopped(self.name)
        else:
            WorkerRow.mark_stopped(self.name, jobs_performed=performed)

    def _signal_workers(self, signum: int) -> None:
        for slot in self._live():
            try:
                os.kill(slot.pid, signum)
            except ProcessLookupError:
                continue  # exited; reaped on the next pass

    def _install_signal_handlers(self) -> dict:
        handlers = {
            signal.SIGTERM: self._on_stop_signal,
            signal.SIGINT: self._on_stop_signal,
            signal.SIGCHLD: lambda signum, frame: self._wakeup.ring(),
            **{signum: self._on_passed_on_signal for signum in PASSED_ON},
        }
        return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping and signum == signal.SIGINT:
            logger.info("second SIGINT: workers hand their jobs back and stop now")
            self.abort()
            return
        logger.info("%s received: stopping the workers gracefully", signal.Signals(signum).name)
        self.stop()

    def _on_passed_on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._paused = signum == PAUSE_SIGNAL
        self._signal_workers(signum)
