"""A worker loop with limited models: it waits for blocked rows without spinning, asks again
when a slot comes free, and a burst worker waits out a rate limit rather than leaving rows."""

import itertools
import time

import pytest

from jobs.db.base import Engine
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, listen_notify, wait_for
from tests.testapp.models import OrderedJob, RatedJob, Span

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_burst_worker_waits_for_rows_held_back_by_a_rate_limit():
    for _ in range(7):
        RatedJob.objects.create(account="a").enqueue()
    began = time.monotonic()
    assert WorkerLoop(models=[RatedJob], threads=4, burst=True).run() == 7
    assert time.monotonic() - began >= 0.9  # the last two waited for the window
    assert not RatedJob.objects.exclude(state=JobState.SUCCEEDED).exists()
    starts = sorted(Span.objects.values_list("began", flat=True))
    assert all(later - starts[i] >= 0.9 for i, later in enumerate(starts[5:]))


def test_a_worker_whose_rows_are_blocked_neither_spins_nor_waits_for_the_interval(monkeypatch):
    claims = []
    claim = Engine.claim
    monkeypatch.setattr(Engine, "claim", lambda *a, **kw: claims.append(1) or claim(*a, **kw))
    for _ in range(4):
        OrderedJob.objects.create(account="a", sleep_seconds=0.5).enqueue()
    worker = WorkerLoop(models=[OrderedJob], threads=4, interval=5)
    thread = in_thread(worker)
    try:
        wait_for(lambda: not OrderedJob.objects.exclude(state=JobState.SUCCEEDED).exists(), 10)
    finally:
        worker.stop()
        thread.join(10)
    spans = list(Span.objects.order_by("began"))
    assert [span.job_id for span in spans] == sorted(span.job_id for span in spans)
    gaps = [later.began - earlier.ended for earlier, later in itertools.pairwise(spans)]
    assert max(gaps) < 1.0, gaps  # the next one starts as the last finishes, not after 5 s
    # Two seconds of blocked rows: a claim when each job finishes, not one every few ms.
    assert len(claims) <= 12, len(claims)


@listen_notify
def test_a_slot_freed_on_one_worker_wakes_another_at_once():
    first, second = (OrderedJob.objects.create(account="a", sleep_seconds=0.3) for _ in range(2))
    first.enqueue()
    second.enqueue()
    # One worker takes a single job and then claims no more; the other, polling every 5 s,
    # must hear that the slot came free rather than wait out its interval.
    taker = WorkerLoop(models=[OrderedJob], threads=2, interval=5, max_jobs=1)
    waiter = WorkerLoop(models=[OrderedJob], threads=2, interval=5)
    threads = [in_thread(taker)]
    wait_for(lambda: Span.objects.exists(), 10)
    threads.append(in_thread(waiter))
    try:
        wait_for(lambda: not OrderedJob.objects.exclude(state=JobState.SUCCEEDED).exists(), 10)
    finally:
        for worker in (taker, waiter):
            worker.stop()
        for thread in threads:
            thread.join(10)
    earlier, later = Span.objects.order_by("began")
    assert (taker.performed, waiter.performed) == (1, 1)
    assert later.began - earlier.ended < 1.0, later.began - earlier.ended
