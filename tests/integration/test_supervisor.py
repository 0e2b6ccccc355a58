"""`runjobs --processes`: a real supervisor, its forked workers, and real signals.

Each test counts executions in Effect, so "none lost, none run twice" is checked exactly;
a re-run is accepted only where a SIGKILL explains it. The supervisor's stderr goes to a
file rather than a pipe: nothing reads a pipe while a test waits on the database, and a
full one would block every worker writing a log line.
"""

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs.models import JobState, Worker
from jobs.models.queryset import WORKER_LOST
from jobs.runtime.worker import EXIT_INTERRUPTED, EXIT_OK
from tests.conftest import REPO, manage_env, wait_for
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HOST = socket.gethostname()
# A short lease, so a SIGKILLed worker's jobs are rescued within the test.
ENV = {"JOBS_LEASE_SECONDS": "2", "JOBS_LOG_LEVEL": "INFO"}


class SupervisorProcess:
    """A `runjobs --processes` process started by a test, and what it left in the database."""

    def __init__(self, args: tuple[str, ...], log: Path, env: dict[str, str]) -> None:
        self.log_path = log
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "runjobs", *args],
                cwd=REPO,
                env=manage_env(**env),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.pid = self.process.pid
        self.name = f"{HOST}:{self.pid}"

    def children(self) -> list[Worker]:
        """Its worker processes' rows, oldest first: one per process it has started."""
        return list(Worker.objects.filter(supervisor__name=self.name).order_by("started_at"))

    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the supervisor did not exit within {timeout}s:\n{self.log()}")

    def kill_tree(self) -> None:
        """SIGKILL it and every worker process it started that is still alive.

        Workers run in their own process groups, so they are found by pid: those forked
        now (the supervisor is stopped first, so it forks no more) and those that
        registered a row, which may have outlived it.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
        pids = {pid for pid in all_pids() if parent_of(pid) == self.pid}
        pids.update(row.pid for row in Worker.objects.filter(supervisor__name=self.name))
        for pid in pids:
            if is_runjobs(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def supervise(tmp_path):
    """Start `runjobs ARGS` as a supervisor; whatever is left of it is killed afterwards."""
    started: list[SupervisorProcess] = []

    def start(*args: str, **env: str) -> SupervisorProcess:
        supervisor = SupervisorProcess(
            args, tmp_path / f"supervisor-{len(started)}.log", {**ENV, **env}
        )
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.kill_tree()


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()


def parent_of(pid: int) -> int | None:
    stat = proc_stat(pid)
    return int(stat[1]) if stat else None


def is_alive(pid: int) -> bool:
    """Running and not a zombie: an orphan's exit is reaped by whoever adopted it, or never."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def is_runjobs(pid: int) -> bool:
    """Guards against SIGKILLing a stranger that got a dead worker's pid."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return is_alive(pid) and b"runjobs" in command


def enqueue(count: int, **fields) -> list[RecordingJob]:
    return RecordingJob.objects.bulk_enqueue(
        RecordingJob(label_text=f"job-{n}", **fields) for n in range(count)
    )


def executions() -> Counter:
    """How many times each job id was performed."""
    return Counter(Effect.objects.values_list("job_id", flat=True))


def pid_of_claimant(claimed_by: str) -> int:
    """The process id in a claim (`host:pid`)."""
    return int(claimed_by.split(":")[1])


def ids(state: str) -> set[int]:
    return set(RecordingJob.objects.filter(state=state).values_list("pk", flat=True))


def test_a_burst_supervisor_drains_the_queue_with_both_processes_each_job_once(supervise):
    jobs = enqueue(400, sleep_seconds=0.002)
    supervisor = supervise("--processes", "2", "--threads", "4", "--burst")
    assert supervisor.wait(timeout=30) == EXIT_OK, supervisor.log()

    performed = executions()
    assert set(performed) == {job.pk for job in jobs}
    assert set(performed.values()) == {1}, "some job was performed more than once"
    assert RecordingJob.objects.filter(state=JobState.SUCCEEDED, attempts=1).count() == 400

    children = supervisor.children()
    assert Worker.objects.get(supervisor=None).name == supervisor.name
    assert Worker.objects.count() == 3
    assert len(children) == 2
    assert {row.threads for row in children} == {4}
    assert set(Worker.objects.values_list("state", flat=True)) == {Worker.State.STOPPED}
    assert sum(row.jobs_performed for row in children) == 400
    per_process = Counter(
        pid_of_claimant(w) for w in Effect.objects.values_list("worker", flat=True)
    )
    assert set(per_process) == {row.pid for row in children}, f"work was not shared: {per_process}"


def test_sigterm_lets_the_jobs_in_hand_finish_and_leaves_the_rest_pending(supervise):
    enqueue(10, sleep_seconds=1)
    supervisor = supervise("--processes", "2", "--threads", "2", "--grace", "10")
    wait_for(lambda: Effect.objects.count() >= 4, timeout=15)  # every thread is busy
    began = time.monotonic()
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=15) == EXIT_OK, supervisor.log()
    assert time.monotonic() - began < 5

    performed = executions()
    assert len(performed) == 4, "a job was claimed after SIGTERM"
    assert set(performed.values()) == {1}
    assert ids(JobState.SUCCEEDED) == set(performed)
    assert RecordingJob.objects.filter(state=JobState.PENDING, attempts=0).count() == 6
    assert not RecordingJob.objects.filter(state=JobState.RUNNING).exists()
    assert set(Worker.objects.values_list("state", flat=True)) == {Worker.State.STOPPED}
    assert "SIGTERM received: stopping the workers gracefully" in supervisor.log()


def test_a_second_sigint_hands_the_running_jobs_back_uncounted_and_exits_130(supervise):
    enqueue(6, sleep_seconds=60)
    supervisor = supervise("--processes", "2", "--threads", "2", "--grace", "60")
    wait_for(lambda: Effect.objects.count() >= 4, timeout=15)
    supervisor.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    began = time.monotonic()
    supervisor.process.send_signal(signal.SIGINT)
    assert supervisor.wait(timeout=10) == EXIT_INTERRUPTED, supervisor.log()
    assert time.monotonic() - began < 5

    performed = executions()
    assert len(performed) == 4
    assert set(performed.values()) == {1}
    assert (
        RecordingJob.objects.filter(state=JobState.PENDING, attempts=0, claimed_by="").count() == 6
    )
    assert set(Worker.objects.values_list("state", flat=True)) == {Worker.State.STOPPED}
    assert supervisor.log().count("handed back to the queue unfinished") == 4


def test_a_sigkilled_worker_is_replaced_and_its_jobs_are_rescued(supervise):
    jobs = enqueue(16, sleep_seconds=1, max_attempts=3)
    supervisor = supervise("--processes", "2", "--threads", "2", "--interval", "0.1")
    wait_for(lambda: len(supervisor.children()) == 2, timeout=10)
    victim = supervisor.children()[0].pid

    def victim_is_early_in_a_job() -> bool:
        """At least half of a job's second still to go, and perform() begun (its Effect is
        written), so the kill lands mid-job rather than between the claim and the work."""
        running = RecordingJob.objects.filter(
            state=JobState.RUNNING,
            claimed_by=f"{HOST}:{victim}",
            started_at__gte=timezone.now() - timedelta(seconds=0.5),
        )
        return Effect.objects.filter(job_id__in=running.values("pk")).exists()

    wait_for(victim_is_early_in_a_job, timeout=10)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: len(supervisor.children()) == 3, timeout=10)
    assert time.monotonic() - killed_at >= 0.9, "restarted without the crash delay"
    replacement = supervisor.children()[-1]
    assert replacement.pid != victim
    assert replacement.state == Worker.State.RUNNING

    wait_for(lambda: len(ids(JobState.SUCCEEDED)) == len(jobs), timeout=20)
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) == EXIT_OK, supervisor.log()

    log = supervisor.log()
    assert "died (SIGKILL)" in log
    assert "restarting it in 1s" in log
    assert "rescued" in log
    performed = executions()
    assert set(performed) == {job.pk for job in jobs}
    run_twice = {job_id for job_id, count in performed.items() if count > 1}
    assert set(performed.values()) <= {1, 2}
    # Only the jobs the victim had in hand (one per thread) may have run again.
    assert 1 <= len(run_twice) <= 2
    # (The victim had two jobs in hand, so their rescue gave each an extra attempt: the
    # second run is attempt 2 either way; the first run is the earlier Effect.)
    first_runs = [Effect.objects.filter(job_id=job_id).earliest("pk") for job_id in run_twice]
    assert {pid_of_claimant(effect.worker) for effect in first_runs} == {victim}
    for job in RecordingJob.objects.filter(pk__in=run_twice):  # rescued as WorkerLost once
        (lost,) = job.error_history
        assert job.attempts == 2
        assert job.max_attempts == (4 if "not counted" in lost["message"] else 3)


def test_a_worker_that_keeps_crashing_is_restarted_after_doubling_delays(supervise):
    """Three jobs that SIGKILL whichever worker performs them, one thread per worker.

    Each job takes down exactly one worker: with one attempt, it is failed as "worker lost"
    once its lease runs out instead of being run again. So the lone worker slot sees exactly
    three crashes, each soon after its start, and its four starts must be about 1, 2 and
    4 seconds apart; a tight restart loop would put them milliseconds apart.
    """
    jobs = enqueue(3, kill_worker=True, max_attempts=1)
    supervisor = supervise("--processes", "1", "--threads", "1", "--interval", "0.1")
    wait_for(lambda: len(supervisor.children()) == 4, timeout=15)
    wait_for(lambda: len(ids(JobState.FAILED)) == 3, timeout=10)  # rescued by the 4th
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) == EXIT_OK, supervisor.log()

    starts = [row.started_at for row in supervisor.children()]
    assert len(starts) == 4, "a worker was started with no crash to explain it"
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    for gap, delay in zip(gaps, [1, 2, 4], strict=True):
        assert delay <= gap < delay + 1, gaps
    log = supervisor.log()
    delays = [
        line.rpartition("restarting it in ")[2] for line in log.splitlines() if "died" in line
    ]
    assert delays == ["1s", "2s", "4s"]
    assert set(executions().values()) == {1}
    assert len(executions()) == 3
    for job in RecordingJob.objects.filter(pk__in=[job.pk for job in jobs]):
        assert (job.state, job.error_type) == (JobState.FAILED, WORKER_LOST)


def test_max_jobs_recycles_the_worker_process_at_once_and_every_job_runs_once(supervise):
    enqueue(12)
    supervisor = supervise("--processes", "1", "--threads", "1", "--burst", "--max-jobs", "5")
    assert supervisor.wait(timeout=30) == EXIT_OK, supervisor.log()

    performed = executions()
    assert len(performed) == 12
    assert set(performed.values()) == {1}
    assert RecordingJob.objects.filter(state=JobState.SUCCEEDED, attempts=1).count() == 12
    children = supervisor.children()
    assert [row.jobs_performed for row in children] == [5, 5, 2]
    assert {row.state for row in children} == {Worker.State.STOPPED}
    per_process = Counter(
        pid_of_claimant(w) for w in Effect.objects.values_list("worker", flat=True)
    )
    assert per_process == {row.pid: row.jobs_performed for row in children}
    log = supervisor.log()
    assert log.count("exited with status 3") == 2
    assert "died" not in log  # recycled at once, not treated as a crash


def test_workers_stop_on_their_own_when_their_supervisor_is_sigkilled(supervise):
    enqueue(10, sleep_seconds=1)
    supervisor = supervise(
        "--processes", "2", "--threads", "2", "--grace", "10", "--interval", "0.2"
    )
    wait_for(lambda: Effect.objects.count() >= 4, timeout=15)
    workers = [row.pid for row in supervisor.children()]
    assert len(workers) == 2
    supervisor.process.send_signal(signal.SIGKILL)
    supervisor.wait(timeout=5)
    wait_for(lambda: not any(is_alive(pid) for pid in workers), timeout=8)

    performed = executions()
    assert set(performed.values()) == {1}
    assert ids(JobState.SUCCEEDED) == set(performed), "a job in hand was not finished"
    assert not RecordingJob.objects.filter(state=JobState.RUNNING).exists()
    assert ids(JobState.PENDING) | set(performed) == set(
        RecordingJob.objects.values_list("pk", flat=True)
    )
    assert {row.state for row in supervisor.children()} == {Worker.State.STOPPED}
    # Once per worker: a worker whose supervisor has gone must not spin while it finishes.
    assert supervisor.log().count("its supervisor has gone; stopping") == 2


def test_a_worker_restarted_while_the_supervisor_is_paused_starts_paused(supervise):
    """A pause must outlive the worker processes it was sent to.

    The supervisor forwards SIGUSR2 to the workers alive at that moment; one it starts
    later (after a crash, here) must not claim the jobs the operator paused.
    """
    supervisor = supervise("--processes", "1", "--interval", "0.1")
    wait_for(lambda: len(supervisor.children()) == 1, timeout=10)
    supervisor.process.send_signal(signal.SIGUSR2)
    wait_for(lambda: "paused (SIGUSR2)" in supervisor.log(), timeout=5)
    os.kill(supervisor.children()[0].pid, signal.SIGKILL)
    wait_for(lambda: len(supervisor.children()) == 2, timeout=10)
    (job,) = enqueue(1)
    time.sleep(1.5)
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.PENDING

    supervisor.process.send_signal(signal.SIGCONT)
    wait_for(lambda: RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED, timeout=5)
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) == EXIT_OK, supervisor.log()
    assert executions() == {job.pk: 1}


def test_a_stopped_supervisor_row_counts_every_job_its_workers_performed(supervise):
    enqueue(3)
    # The default lease: a heartbeat every 15 s, so none lands during this short run.
    supervisor = supervise("--processes", "1", "--burst", JOBS_LEASE_SECONDS="60")
    assert supervisor.wait(timeout=30) == EXIT_OK, supervisor.log()
    assert Worker.objects.get(name=supervisor.name).jobs_performed == 3


def test_the_supervisor_counts_the_recycles_max_memory_caused_and_each_process_its_memory(
    supervise,
):
    jobs = enqueue(3)
    supervisor = supervise("--processes", "1", "--threads", "1", "--max-memory", "1", "--burst")
    assert supervisor.wait(timeout=60) == EXIT_OK, supervisor.log()
    assert set(executions()) == {job.pk for job in jobs}
    assert set(executions().values()) == {1}
    row = Worker.objects.get(name=supervisor.name)
    assert row.memory_recycles == 3, supervisor.log()
    children = supervisor.children()
    assert [child.memory_recycles for child in children] == [1, 1, 1, 0]
    assert children[-1].stop_reason == "drained the queues (--burst)"


def test_each_heartbeat_records_the_process_memory(supervise):
    supervisor = supervise("--processes", "1", "--threads", "1")
    wait_for(
        lambda: (
            len(((children := supervisor.children()) and children[0].memory_samples) or []) >= 3
        ),
        what="three heartbeats' memory readings",
    )
    (child,) = supervisor.children()
    times = [at for at, _ in child.memory_samples]
    assert times == sorted(times)
    assert all(10 < megabytes < 1000 for _, megabytes in child.memory_samples)
    assert child.memory_mb == child.memory_samples[-1][1]
    wait_for(lambda: Worker.objects.get(name=supervisor.name).memory_mb is not None)
