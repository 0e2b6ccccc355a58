"""`runjobs --processes MIN-MAX`: a real supervisor grows under a burst and shrinks when idle.

The burst is slow jobs (sleeping, so the CPUs stay free), more than one process's threads
can take; each is counted in Effect, so "every job once" is exact. Scaling down stops a
process gracefully: nothing is handed back, so no job runs twice.
"""

import time

import pytest

from jobs.models import JobState, Worker
from jobs.runtime.worker import EXIT_OK
from tests.conftest import manage, wait_for
from tests.integration import test_supervisor
from tests.integration.test_supervisor import enqueue, executions
from tests.testapp.models import OrderedJob, RecordingJob, Span

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
supervise = test_supervisor.supervise  # the fixture: a supervisor, killed after the test

AUTOSCALING = ("--processes", "1-3", "--threads", "2", "--no-clock")
FAST = ("--scale-up-after", "1", "--scale-down-after", "2", "--interval", "0.2")


def alive_children(supervisor) -> list[Worker]:
    return [row for row in supervisor.children() if row.state == Worker.State.RUNNING]


def test_a_burst_grows_the_workers_from_one_to_three_and_idleness_shrinks_them_back(supervise):
    supervisor = supervise(*AUTOSCALING, *FAST)
    wait_for(lambda: len(alive_children(supervisor)) == 1, timeout=20, what="the first worker")
    time.sleep(3)  # idle: it stays at one process (the minimum)
    assert len(alive_children(supervisor)) == 1

    jobs = enqueue(24, sleep_seconds=1.0)
    wait_for(lambda: len(alive_children(supervisor)) == 3, timeout=30, what="three workers")
    wait_for(
        lambda: RecordingJob.objects.filter(state=JobState.SUCCEEDED).count() == 24,
        timeout=60,
        what="the burst drained",
    )
    wait_for(lambda: len(alive_children(supervisor)) == 1, timeout=30, what="back to one worker")

    performed = executions()
    assert set(performed) == {job.pk for job in jobs}
    assert set(performed.values()) == {1}, "some job was performed more than once"
    assert RecordingJob.objects.filter(attempts=1).count() == 24
    row = Worker.objects.get(name=supervisor.name)
    assert (row.min_processes, row.max_processes, row.processes_wanted) == (1, 3, 1)
    changes = [(d["from"], d["to"]) for d in row.scaling_decisions if d["from"] != d["to"]]
    assert changes == [(1, 2), (2, 3), (3, 2), (2, 1)], row.scaling_decisions
    assert "the oldest job in default waited" in row.scaling_decisions[0]["why"]
    assert "no job waited for 2s" in row.scaling_decisions[-1]["why"]
    retired = [r for r in supervisor.children() if r.state == Worker.State.STOPPED]
    assert len(retired) == 2
    # A retired worker marks itself stopped ("stopped by SIGTERM") before it exits; the
    # supervisor says why once it has reaped it, a moment later.
    wait_for(
        lambda: (
            {r.stop_reason for r in supervisor.children() if r.state == Worker.State.STOPPED}
            == {"stopped by its supervisor: the queues needed one process fewer"}
        ),
        timeout=10,
        what="the supervisor's reason on both retired workers",
    )
    log = supervisor.log()
    assert "autoscaling 1 -> 2: the oldest job in default waited" in log
    assert "autoscaling 2 -> 1: no job waited for 2s" in log

    supervisor.process.terminate()
    assert supervisor.wait(timeout=30) == EXIT_OK


def test_jobs_held_back_by_a_concurrency_limit_do_not_grow_the_workers(supervise):
    """The backlog waits, but for its limit, with the one process's threads idle: the
    supervisor records that it holds, and keeps one process."""
    supervisor = supervise("--processes", "1-3", "--threads", "4", "--no-clock", *FAST)
    wait_for(lambda: len(alive_children(supervisor)) == 1, timeout=20, what="the first worker")
    jobs = OrderedJob.objects.bulk_enqueue(
        OrderedJob(account="acme", sleep_seconds=0.5) for _ in range(8)
    )
    wait_for(
        lambda: OrderedJob.objects.filter(state=JobState.SUCCEEDED).count() == 8,
        timeout=60,
        what="the limited jobs",
    )
    row = Worker.objects.get(name=supervisor.name)
    assert row.processes_wanted == 1
    assert len(supervisor.children()) == 1, "a process was added for jobs a limit held back"
    holds = [d["why"] for d in row.scaling_decisions]
    assert holds, "the hold was not recorded"
    assert all(d["from"] == d["to"] == 1 for d in row.scaling_decisions)
    assert holds[0].startswith("held at 1: the oldest job in default waited")
    assert "but only 1 thread(s) are busy" in holds[0]
    assert Span.objects.count() == len(jobs)


def test_a_bad_process_range_is_refused_before_anything_starts():
    for bad in ("3-1", "0-2", "2-2", "a-b", "1-", "-3"):
        result = manage("runjobs", "--processes", bad)
        assert result.returncode == 2, bad
        assert "is not P or MIN-MAX processes, with 0 < MIN < MAX (such as 1-4)" in result.stderr


def test_an_autoscaling_burst_supervisor_grows_then_exits_once_the_queues_are_drained(supervise):
    jobs = enqueue(12, sleep_seconds=0.5)
    supervisor = supervise("--processes", "1-2", "--threads", "1", "--burst", *FAST)
    assert supervisor.wait(timeout=60) == EXIT_OK, supervisor.log()
    assert set(executions()) == {job.pk for job in jobs}
    assert set(executions().values()) == {1}
    assert len(supervisor.children()) == 2, supervisor.log()
    assert set(Worker.objects.values_list("state", flat=True)) == {Worker.State.STOPPED}
