"""A worker loop with limited models: it waits for blocked rows without spinning, asks again
when a slot comes free, and a burst worker waits out a rate limit rather than leaving rows."""

import itertools
import time

import pytest

from jobs.db.base import Engine
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, wait_for
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
