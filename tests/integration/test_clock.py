"""Real `runjobs` processes running the clock together: every second's slot once, no gaps."""

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from jobs.models import JobState, ScheduledRun
from jobs.models import Worker as WorkerRow
from tests.conftest import start_manage, wait_for
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLOCKS = 3
SLOTS = 6


def test_three_workers_running_the_clock_enqueue_each_slot_once_and_run_it_once():
    workers = [
        start_manage("runjobs", DJANGO_SETTINGS_MODULE="tests.settings_clock")
        for _ in range(CLOCKS)
    ]
    try:
        wait_for(lambda: ScheduledRun.objects.count() >= SLOTS + 2, timeout=60)
        wait_for(lambda: WorkerRow.objects.exclude(clock_ticked_at=None).count() == CLOCKS)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=60) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr

    slots = sorted(ScheduledRun.objects.values_list("slot", flat=True))
    assert slots == [slots[0] + timedelta(seconds=n) for n in range(len(slots))], "a gap"
    jobs = RecordingJob.objects.filter(label_text="scheduled")
    assert sorted(str(pk) for pk in jobs.values_list("pk", flat=True)) == sorted(
        ScheduledRun.objects.values_list("job_pk", flat=True)
    )
    ran = Counter(Effect.objects.values_list("job_id", flat=True))
    assert set(ran.values()) == {1}, "a scheduled job ran twice"
    assert set(ran) == set(jobs.filter(state=JobState.SUCCEEDED).values_list("pk", flat=True))
    assert jobs.exclude(state=JobState.SUCCEEDED).exclude(state=JobState.PENDING).count() == 0


def test_a_worker_told_not_to_run_the_clock_enqueues_nothing():
    worker = start_manage("runjobs", "--no-clock", DJANGO_SETTINGS_MODULE="tests.settings_clock")
    try:
        wait_for(lambda: WorkerRow.objects.filter(state="running").exists())
        time.sleep(2.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert ScheduledRun.objects.count() == 0
    assert WorkerRow.objects.get().clock_ticked_at is None
