"""Ten real processes enqueue the same unique key at once while a real worker drains it.

What it proves: at no sampled moment are there two active rows for the key (and the partial
unique constraint makes that structural, not luck), and every attempt ends one of three ways:
it created the job, it was handed the active one (`get_or_enqueue`), or it got `DuplicateJob`
naming it; none fails otherwise, including when the active job finishes between a refused
insert and the read of its holder. It starts 10 `manage.py shell` processes and one
`runjobs`, which it stops with SIGTERM at the end.
"""

import json
import signal
import time

import pytest

from jobs.models import JobState
from jobs.models.options import ACTIVE_STATES
from tests.conftest import start_manage, wait_for
from tests.testapp.models import Effect, UniqueJob

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROCESSES = 10
ATTEMPTS = 50

ENQUEUER = """
import json, os, time
from jobs.errors import DuplicateJob
from tests.testapp.models import UniqueJob

start = float(os.environ["RACE_START"])
while time.time() < start:
    time.sleep(0.001)
tally = {"created": 0, "existing": 0, "refused": 0, "created_ids": []}
for n in range(int(os.environ["RACE_ATTEMPTS"])):
    time.sleep(0.01)  # spread the attempts over the worker's finishes
    if n % 2:
        job, created = UniqueJob.objects.get_or_enqueue(account="race", sleep_seconds=0.01)
        assert job.pk is not None
        tally["created" if created else "existing"] += 1
    else:
        try:
            job = UniqueJob.objects.create(account="race", sleep_seconds=0.01).enqueue()
        except DuplicateJob as duplicate:
            assert duplicate.existing is not None and duplicate.existing.account == "race"
            tally["refused"] += 1
            continue
        created = True
        tally["created"] += 1
    if created:
        tally["created_ids"].append(job.pk)
print("RACE " + json.dumps(tally))
"""


def test_ten_processes_enqueueing_one_key_never_make_two_active_rows():
    worker = start_manage("runjobs", "--threads", "2", JOBS_LOG_LEVEL="WARNING")
    try:
        start = time.time() + 3  # every process imported Django and is waiting
        enqueuers = [
            start_manage(
                "shell",
                "-c",
                ENQUEUER,
                RACE_START=str(start),
                RACE_ATTEMPTS=str(ATTEMPTS),
                JOBS_LOG_LEVEL="WARNING",
            )
            for _ in range(PROCESSES)
        ]
        samples, most = 0, 0
        while any(process.poll() is None for process in enqueuers):
            active = UniqueJob.objects.filter(account="race", state__in=ACTIVE_STATES).count()
            samples, most = samples + 1, max(most, active)
        outputs = [process.communicate(timeout=120) for process in enqueuers]
        wait_for(lambda: not UniqueJob.objects.filter(state__in=ACTIVE_STATES).exists(), 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, worker_errors = worker.communicate(timeout=60)
    assert worker.returncode == 0, worker_errors

    tallies = []
    for process, (stdout, stderr) in zip(enqueuers, outputs, strict=True):
        assert process.returncode == 0, stderr
        (line,) = [line for line in stdout.splitlines() if line.startswith("RACE ")]
        tallies.append(json.loads(line.removeprefix("RACE ")))
    created = sum(tally["created"] for tally in tallies)
    handed = sum(tally["existing"] for tally in tallies)
    refused = sum(tally["refused"] for tally in tallies)
    print(f"samples={samples} created={created} existing={handed} refused={refused}")

    assert samples > 10, "the run was not sampled"
    assert most <= 1, f"{most} active rows at once in {samples} samples"
    assert created + handed + refused == PROCESSES * ATTEMPTS
    assert created >= 1
    assert handed + refused >= 1, "the processes did not race"
    ids = [pk for tally in tallies for pk in tally["created_ids"]]
    assert len(ids) == len(set(ids)) == created
    succeeded = set(UniqueJob.objects.filter(state=JobState.SUCCEEDED).values_list("pk", flat=True))
    assert succeeded == set(ids), "every created job ran, and nothing else did"
    assert UniqueJob.objects.filter(state=JobState.NEW).count() == refused
    assert Effect.objects.count() == created
