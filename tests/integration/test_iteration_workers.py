"""An iteration of 2,000 items across real `runjobs` processes: SIGTERM its worker mid-way
(the iteration stops at the next item and another worker resumes from its cursor, redoing
nothing), or SIGKILL it (the rescuer redoes only the items since the last saved cursor)."""

import math
import signal
import time
from collections import Counter

import pytest

from jobs.models import JobState
from tests.conftest import manage, start_manage, wait_for
from tests.testapp.models import CountingIteration, IterationItem

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ITEMS = 2_000
ITEM_SECONDS = 0.003
SHORT_LEASE = {"JOBS_LEASE_SECONDS": "1", "JOBS_LOG_LEVEL": "WARNING"}


def items_of(job: CountingIteration) -> Counter:
    """How many times each item ran."""
    return Counter(IterationItem.objects.filter(job_id=job.pk).values_list("item", flat=True))


def run_until_killed(job: CountingIteration, signum: int) -> None:
    """Start a worker, let it get a quarter of the way, then send it `signum`."""
    worker = start_manage("runjobs", "--interval", "0.1", **SHORT_LEASE)
    try:
        wait_for(lambda: IterationItem.objects.filter(job_id=job.pk).count() >= ITEMS // 4)
        worker.send_signal(signum)
        worker.wait(timeout=20)
    finally:
        worker.kill()


def finish_in_another_worker() -> None:
    result = manage("runjobs", "--burst", **SHORT_LEASE)
    assert result.returncode == 0, result.stderr


def test_sigterm_stops_the_iteration_between_items_and_another_worker_resumes_from_its_cursor():
    job = CountingIteration.objects.create(count=ITEMS, item_seconds=ITEM_SECONDS).enqueue()
    run_until_killed(job, signal.SIGTERM)

    row = CountingIteration.objects.get(pk=job.pk)
    done = items_of(job)
    assert (row.state, row.attempts, row.claimed_by) == (JobState.PENDING, 0, "")
    assert ITEMS // 4 <= len(done) < ITEMS
    assert (row.cursor, row.items_done) == (len(done) - 1, len(done))  # saved on stopping

    finish_in_another_worker()
    row.refresh_from_db()
    assert (row.state, row.attempts, row.items_done) == (JobState.SUCCEEDED, 1, ITEMS)
    assert (row.progress_done, row.progress_total) == (ITEMS, ITEMS)
    assert items_of(job) == Counter(range(ITEMS))  # every item exactly once
    workers = IterationItem.objects.filter(job_id=job.pk).values_list("worker", flat=True)
    assert len(set(workers)) == 2


def test_sigkill_redoes_only_the_items_since_the_last_saved_cursor():
    job = CountingIteration.objects.create(
        count=ITEMS, item_seconds=ITEM_SECONDS, max_attempts=2
    ).enqueue()
    run_until_killed(job, signal.SIGKILL)

    row = CountingIteration.objects.get(pk=job.pk)
    assert (row.state, row.attempts) == (JobState.RUNNING, 1)
    saved, reached = row.cursor, max(items_of(job))
    assert row.items_done == saved + 1

    time.sleep(1.2)  # the dead worker's lease runs out
    finish_in_another_worker()
    row.refresh_from_db()
    assert (row.state, row.attempts, row.items_done) == (JobState.SUCCEEDED, 2, ITEMS), (
        row.error_history
    )
    done = items_of(job)
    redone = sorted(item for item, times in done.items() if times > 1)
    assert set(done) == set(range(ITEMS))
    assert set(done.values()) <= {1, 2}
    # Exactly the items after the saved cursor that the killed worker had reached, and no
    # more than one save interval's worth of them (each item takes at least ITEM_SECONDS),
    # plus the one in progress.
    assert redone == list(range(saved + 1, reached + 1))
    bound = math.ceil(CountingIteration.cursor_save_interval / ITEM_SECONDS) + 2
    assert len(redone) <= bound
