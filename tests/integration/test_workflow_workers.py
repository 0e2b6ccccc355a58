"""Dependencies and batches over real `runjobs` processes.

A → B and C after [A, B] on three workers: each child starts only after its parents have
finished, as the rows' own times say; a parent failing for good cancels the graph below it,
naming itself, and requeueing it runs the graph. A batch of 500 members over three workers
SIGKILLed at random and replaced: the `on_finish` job (on a queue of its own, served by a
worker that is never killed) runs exactly once, after the last member ended, and sees the
right counts.
"""

import random
import signal
import subprocess
import time
from collections import Counter

import pytest
from django.db import transaction

from jobs import batch
from jobs.models import Batch, JobState
from jobs.models.dependency import PARENT_ENDED
from jobs.runtime.worker import DEFAULT_THREADS
from tests.conftest import start_manage, wait_for
from tests.integration.test_limits_workers import start_workers, stop
from tests.testapp.models import BatchReport, Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
MEMBERS = 500
FAILING = 20  # members that fail for good (PermissionError is in discard_on)
STORM_ENV = {"JOBS_LEASE_SECONDS": "2", "JOBS_LOG_LEVEL": "ERROR"}


def all_final(*jobs) -> bool:
    return all(type(j).objects.get(pk=j.pk).state in FINAL for j in jobs)


def fresh(*jobs):
    return [type(j).objects.get(pk=j.pk) for j in jobs]


def test_children_start_after_their_parents_and_a_failure_cancels_then_requeue_runs_them():
    workers = start_workers(3)
    try:
        a = RecordingJob.objects.create(label_text="a", sleep_seconds=0.5).enqueue()
        b = RecordingJob.objects.create(label_text="b", sleep_seconds=0.2).enqueue(after=[a])
        c = RecordingJob.objects.create(label_text="c").enqueue(after=[a, b])
        d = RecordingJob.objects.create(label_text="d", sleep_seconds=0.3, fail=True).enqueue()
        e = RecordingJob.objects.create(label_text="e").enqueue(after=[d])
        f = RecordingJob.objects.create(label_text="f").enqueue(after=[d, e])
        wait_for(lambda: all_final(a, b, c, d, e, f), 60)

        a, b, c, d, e, f = fresh(a, b, c, d, e, f)
        assert [j.state for j in (a, b, c)] == [JobState.SUCCEEDED] * 3
        assert b.started_at >= a.finished_at
        assert c.started_at >= max(a.finished_at, b.finished_at)
        assert d.state == JobState.FAILED
        assert [(j.state, j.error_type) for j in (e, f)] == [(JobState.CANCELLED, PARENT_ENDED)] * 2
        assert e.error_message.startswith(f"testapp.RecordingJob#{d.pk} failed")
        assert not Effect.objects.filter(job_id__in=[e.pk, f.pk]).exists()

        RecordingJob.objects.filter(pk=d.pk).update(fail=False)
        d.requeue()
        wait_for(lambda: all_final(d, e, f) and fresh(f)[0].state == JobState.SUCCEEDED, 60)
        d, e, f = fresh(d, e, f)
        assert e.started_at >= d.finished_at
        assert f.started_at >= max(d.finished_at, e.finished_at)
    finally:
        stop(workers)
    runs = Counter(Effect.objects.values_list("job_id", flat=True))
    assert runs == {a.pk: 1, b.pk: 1, c.pk: 1, d.pk: 2, e.pk: 1, f.pk: 1}


def test_a_batch_finishes_once_through_a_sigkill_storm_with_the_right_counts(capsys):
    chance = random.Random(20261206)
    callbacks = start_manage("runjobs", "--no-clock", "--queues", "callbacks", **STORM_ENV)
    workers = [start_member_worker() for _ in range(3)]
    kills = 0
    began = time.monotonic()
    try:
        # One transaction: the members appear together, and the storm starts with them.
        report = BatchReport(queue="callbacks")
        with transaction.atomic(), batch(on_finish=report, description="storm") as storm:
            for n in range(MEMBERS):
                RecordingJob.objects.create(
                    label_text=f"member {n}",
                    sleep_seconds=chance.uniform(0.1, 0.4),
                    behaviour="forbidden" if n < FAILING else "",
                    max_attempts=25,
                ).enqueue()
        next_kill = time.monotonic() + chance.uniform(0.3, 0.7)
        while not Batch.objects.get(pk=storm.pk).finished_at:
            assert time.monotonic() - began < 180, "the batch did not finish in time"
            if time.monotonic() >= next_kill:
                victim = chance.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(timeout=10)
                workers[victim] = start_member_worker()
                kills += 1
                next_kill = time.monotonic() + chance.uniform(0.3, 0.7)
            time.sleep(0.05)
        wait_for(lambda: fresh(report)[0].state == JobState.SUCCEEDED, 60)
    finally:
        for worker in [*workers, callbacks]:
            worker.send_signal(signal.SIGTERM)
        for worker in [*workers, callbacks]:
            worker.communicate(timeout=60)

    storm.refresh_from_db()
    (report,) = fresh(report)
    members = RecordingJob.objects.filter(label_text__startswith="member ")
    executions = Effect.objects.filter(job_model="testapp.RecordingJob")
    runs = Counter(executions.values_list("job_id", flat=True))
    duplicates = sum(runs.values()) - len(runs)
    with capsys.disabled():
        print(
            f"\nbatch storm: {MEMBERS} members, {kills} SIGKILLs, {sum(runs.values())} member "
            f"executions ({duplicates} duplicates, at most {kills * DEFAULT_THREADS} explained), "
            f"{time.monotonic() - began:.1f}s"
        )
    assert kills >= 3
    assert (storm.total, storm.succeeded, storm.failed, storm.cancelled) == (
        MEMBERS,
        MEMBERS - FAILING,
        FAILING,
        0,
    )
    assert members.filter(state=JobState.SUCCEEDED).count() == MEMBERS - FAILING
    assert members.filter(state=JobState.FAILED).count() == FAILING
    assert len(runs) == MEMBERS
    assert duplicates <= kills * DEFAULT_THREADS
    assert Effect.objects.filter(job_model="testapp.BatchReport").count() == 1
    assert report.attempts == 1
    assert report.seen == f"{MEMBERS - FAILING}/{FAILING}/0 of {MEMBERS}, {MEMBERS} members"
    assert report.started_at >= max(m.finished_at for m in members)
    assert storm.finished_at >= max(m.finished_at for m in members)


def start_member_worker() -> subprocess.Popen:
    return start_manage(
        "runjobs", "--no-clock", "--queues", "default", "--interval", "0.1", **STORM_ENV
    )
