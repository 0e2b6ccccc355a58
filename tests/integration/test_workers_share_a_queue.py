"""Several real `runjobs` processes on one database: every job performed exactly once."""

from collections import Counter

import pytest
from django.db import transaction

from jobs.models import JobState
from tests.conftest import start_manage
from tests.testapp.models import Effect, RecordingJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JOBS = 1_000
WORKERS = 2


def test_two_burst_workers_drain_1000_jobs_each_exactly_once():
    with transaction.atomic():
        for n in range(JOBS):
            RecordingJob.objects.create(label_text=f"job-{n}", sleep_seconds=0.002).enqueue()

    workers = [start_manage("runjobs", "--burst", JOBS_LOG_LEVEL="WARNING") for _ in range(WORKERS)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr

    performed = Counter(Effect.objects.values_list("job_id", flat=True))
    assert len(performed) == JOBS
    assert set(performed.values()) == {1}, "some job was performed more than once"
    assert RecordingJob.objects.filter(state=JobState.SUCCEEDED, attempts=1).count() == JOBS
    per_process = Counter(
        worker.split(":")[1] for worker in Effect.objects.values_list("worker", flat=True)
    )
    assert len(per_process) == WORKERS, f"work was not shared: {per_process}"
