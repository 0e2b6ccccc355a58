"""The autoscaler's decisions, one check at a time, and what it observes in the database.

The decisions are a pure function of the observations and a clock, so each rule is checked
here exactly; `tests/integration/test_autoscale.py` runs it in a real supervisor."""

import argparse
from datetime import timedelta

import pytest

from jobs.cli.arguments import process_range
from jobs.models import JobState, QueuePause
from jobs.runtime.autoscale import Autoscaler, Observation, observe
from jobs.runtime.resources import CpuMeter, ProcessMemory
from tests.conftest import NOON
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob, UrgentJob


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def late(waited: float = 30.0, busy: int = 4, processes: int = 1) -> Observation:
    """The default queue's oldest job waited `waited` s; `busy` jobs running in process 1."""
    running = {pid: 0 for pid in range(1, processes + 1)}
    running[1] = busy
    return Observation(late=("default", waited, 10.0), longest_wait=waited, running=running)


def calm(running: dict[int, int]) -> Observation:
    return Observation(late=None, longest_wait=0.0, running=running)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def scaler(clock):
    return Autoscaler(1, 3, threads=4, up_after=10, down_after=60, clock=clock)


def test_a_late_queue_with_busy_threads_and_free_cpus_adds_one_process(scaler, clock):
    decision = scaler.decide(1, late(), cpu_busy=0.3)
    assert (decision.before, decision.after) == (1, 2)
    assert decision.reason == "the oldest job in default waited 30s (over 10s)"


def test_growth_waits_up_after_between_steps_and_stops_at_the_most(scaler, clock):
    assert scaler.decide(1, late(), 0.3).after == 2
    clock.now = 9
    assert scaler.decide(2, late(busy=8, processes=2), 0.3) is None
    clock.now = 10
    assert scaler.decide(2, late(busy=8, processes=2), 0.3).after == 3
    clock.now = 100
    assert scaler.decide(3, late(busy=12, processes=3), 0.3) is None


def test_a_wait_with_idle_threads_is_held_and_recorded_once(scaler, clock):
    """Jobs a limit holds back wait while threads idle: more processes would not start them."""
    held = scaler.decide(1, late(busy=1), 0.3)
    assert (held.before, held.after) == (1, 1)
    assert held.reason == (
        "held at 1: the oldest job in default waited 30s (over 10s), but only 1 thread(s) are busy"
    )
    clock.now = 20
    assert scaler.decide(1, late(busy=1), 0.3) is None  # the same hold: not recorded again
    cpu = scaler.decide(1, late(busy=4), 0.95)
    assert cpu.reason.endswith("but the CPUs are 95% busy")
    assert scaler.decide(1, late(busy=4), 0.95) is None
    assert scaler.decide(1, late(busy=4), 0.5).after == 2  # the CPUs are free again


def test_an_idle_process_is_stopped_only_after_a_calm_of_down_after(scaler, clock):
    running = {11: 2, 12: 0, 13: 0}
    assert scaler.decide(3, calm(running), 0.1) is None  # the calm begins
    clock.now = 59
    assert scaler.decide(3, calm(running), 0.1) is None
    clock.now = 60
    decision = scaler.decide(3, calm(running), 0.1)
    assert (decision.before, decision.after, decision.stop_pid) == (3, 2, 13)
    assert decision.reason == "no job waited for 1m"
    clock.now = 61  # the calm starts over after a change
    assert scaler.decide(2, calm({11: 2, 12: 0}), 0.1) is None
    clock.now = 121
    assert scaler.decide(2, calm({11: 2, 12: 0}), 0.1).stop_pid == 12
    clock.now = 1000
    assert scaler.decide(1, calm({11: 0}), 0.1) is None  # never below the fewest


def test_a_wait_interrupts_the_calm_and_busy_processes_are_never_stopped(scaler, clock):
    assert scaler.decide(2, calm({1: 0, 2: 0}), 0.1) is None
    clock.now = 50
    waiting = Observation(late=None, longest_wait=2.0, running={1: 4, 2: 4})
    assert scaler.decide(2, waiting, 0.1) is None  # not late, but not calm either
    clock.now = 100
    assert scaler.decide(2, calm({1: 4, 2: 4}), 0.1) is None  # calm for 50 s only
    clock.now = 200
    assert scaler.decide(2, calm({1: 4, 2: 4}), 0.1) is None  # calm, but nothing idle


@pytest.mark.django_db
def test_observe_finds_the_oldest_runnable_job_per_queue_and_the_jobs_each_process_runs(
    frozen, settings
):
    settings.JOBS_QUEUES = {"fast": {"sla": "5s"}}

    def row(queue: str = "default", due_in: float = 0, **changes) -> None:
        job = RecordingJobFactory(enqueue=True, queue=queue)
        due = NOON + timedelta(seconds=due_in)
        RecordingJob.objects.filter(pk=job.pk).update(run_at=due, **changes)

    row(due_in=-30)
    row("fast", due_in=-6)
    row("fast", due_in=60)
    row(due_in=-3600, state=JobState.RUNNING, claimed_by="host:7", started_at=NOON)
    row(due_in=-3600, state=JobState.RUNNING, claimed_by="elsewhere:7", started_at=NOON)
    processes = {"host:7": 7, "host:8": 8}
    seen = observe([RecordingJob, UrgentJob], None, processes, NOON, up_after=10)
    assert seen.running == {7: 1, 8: 0}
    assert seen.longest_wait == 30
    # default waited 30 s against 10 (20 over); fast 6 s against its SLA of 5 (1 over)
    assert seen.late == ("default", 30, 10)
    only_fast = observe([RecordingJob], ["fast"], processes, NOON, up_after=10)
    assert only_fast.late == ("fast", 6, 5)
    QueuePause.objects.pause("default")
    QueuePause.objects.pause("fast", model="testapp.RecordingJob")
    paused = observe([RecordingJob], None, processes, NOON, up_after=10)
    assert (paused.late, paused.longest_wait) == (None, 0.0)


def test_process_range_reads_one_number_or_a_range():
    assert process_range("3") == (3, 3)
    assert process_range("1-4") == (1, 4)
    for bad in ("0", "4-1", "2-2", "x-3", "1-"):
        with pytest.raises(argparse.ArgumentTypeError):
            process_range(bad)


def test_the_cpu_meter_and_the_memory_readings_are_plausible(frozen):
    meter = CpuMeter()
    sum(range(200_000))
    assert 0.0 <= meter.busy() <= 1.0
    memory = ProcessMemory(limit_mb=1)
    first = memory.sample(NOON)
    second = memory.sample(NOON + timedelta(seconds=15))
    assert 10 < first["memory_mb"] < 2000
    assert [at for at, _ in second["memory_samples"]] == [
        int(NOON.timestamp()),
        int(NOON.timestamp()) + 15,
    ]
    assert memory.over_limit().endswith("MB (--max-memory 1)")
    assert ProcessMemory(limit_mb=100_000).over_limit() is None
    assert ProcessMemory().over_limit() is None
