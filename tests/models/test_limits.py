"""Concurrency and rate limits per key, claimed in this process: what each claim takes.

The real-process proofs (several workers, SIGKILL, order across workers) are in
tests/integration/test_limits_workers.py; here each claim's choice is checked exactly.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from jobs import timesource
from jobs.db import engine_for
from jobs.errors import JobNotRunnable
from jobs.models import JobState
from tests.conftest import needs_postgresql, row_held, row_locks
from tests.testapp.models import LimitedJob, OrderedJob, RatedJob

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue(model, *accounts, **fields):
    return [model.objects.create(account=account, **fields).enqueue() for account in accounts]


def claim(model, limit, worker="w1", now=None):
    return engine_for("default").claim(
        model, queue=None, worker=worker, now=now or timesource.now(), limit=limit
    )


def running(model):
    rows = model.objects.filter(state=JobState.RUNNING).values_list("account", "concurrency_slot")
    return sorted(rows, key=lambda row: (row[0] or "", row[1] or 0))


def test_a_claim_takes_at_most_the_limit_per_key_and_fills_from_other_keys():
    jobs = enqueue(LimitedJob, "a", "a", "a", "a", "b", "b", "b", None)
    claimed = claim(LimitedJob, 10)
    assert sorted(job.pk for job in claimed) == [jobs[i].pk for i in (0, 1, 4, 5, 7)]
    assert running(LimitedJob) == [(None, None), ("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert all(job.attempts == 1 for job in claimed)
    assert claim(LimitedJob, 10) == []
    left = LimitedJob.objects.filter(state=JobState.PENDING)
    assert set(left.values_list("attempts", flat=True)) == {0}  # no attempt counted


def test_a_key_at_its_limit_does_not_hold_back_the_keys_behind_it():
    enqueue(LimitedJob, *["a"] * 30, "b")
    assert len(claim(LimitedJob, 1)) == 1
    assert len(claim(LimitedJob, 1)) == 1  # "a" is full now
    (behind,) = claim(LimitedJob, 5)
    assert behind.account == "b"


def test_a_finished_row_frees_its_slot_and_the_next_takes_the_lowest_free_one():
    enqueue(LimitedJob, "a", "a", "a")
    first, second = claim(LimitedJob, 5)
    assert (first.concurrency_slot, second.concurrency_slot) == (0, 1)
    LimitedJob.objects.filter(pk=first.pk).update(state=JobState.SUCCEEDED)
    (third,) = claim(LimitedJob, 5)
    assert third.concurrency_slot == 0


def test_limit_one_claims_each_key_in_enqueue_order():
    jobs = enqueue(OrderedJob, "a", "b", "a", "b", "a")
    order = []
    while True:
        claimed = claim(OrderedJob, 5)
        if not claimed and not OrderedJob.objects.filter(state=JobState.RUNNING).exists():
            break
        order += [job.pk for job in claimed]
        OrderedJob.objects.filter(state=JobState.RUNNING).update(state=JobState.SUCCEEDED)
    assert order == [job.pk for job in jobs]


def test_the_database_refuses_a_row_over_the_limit_whoever_writes_it():
    enqueue(LimitedJob, "a", "a", "a")
    claim(LimitedJob, 5)
    third = LimitedJob.objects.get(state=JobState.PENDING)
    for slot in (0, 1, 2, None):
        with pytest.raises(IntegrityError), transaction.atomic():
            LimitedJob.objects.filter(pk=third.pk).update(
                state=JobState.RUNNING, concurrency_slot=slot
            )


def test_a_rate_limit_counts_the_starts_in_its_period():
    enqueue(RatedJob, *["a"] * 8, *["b"] * 2)
    now = timesource.now()
    claimed = claim(RatedJob, 20, now=now)
    assert sorted(job.account for job in claimed) == ["a"] * 5 + ["b"] * 2
    RatedJob.objects.update(state=JobState.SUCCEEDED)  # finished rows still count
    RatedJob.objects.filter(started_at__isnull=True).update(state=JobState.PENDING)
    assert claim(RatedJob, 20, now=now + timedelta(seconds=0.9)) == []
    later = claim(RatedJob, 20, now=now + timedelta(seconds=1))
    assert [job.account for job in later] == ["a"] * 3


def test_run_takes_a_free_slot_and_refuses_a_key_at_its_limit():
    _first, second, third = enqueue(LimitedJob, "a", "a", "a")
    claim(LimitedJob, 1)  # first runs on a worker, in slot 0
    second.run()
    assert second.state == JobState.SUCCEEDED
    assert second.concurrency_slot == 1
    LimitedJob.objects.filter(pk=second.pk).update(state=JobState.RUNNING)  # slot 1 held again
    with pytest.raises(JobNotRunnable, match=r"account='a' has 2 running \(concurrency_limit\)"):
        third.run()
    third.refresh_from_db()
    assert (third.state, third.attempts) == (JobState.PENDING, 0)


def test_run_refuses_a_key_out_of_starts():
    jobs = enqueue(RatedJob, *["a"] * 6)
    claim(RatedJob, 10)
    with pytest.raises(JobNotRunnable, match=r"5 starts in the last second \(rate_limit\)"):
        jobs[5].run()


def test_drain_passes_over_rows_held_back_by_a_rate_limit():
    from jobs.testing import drain

    enqueue(RatedJob, *["a"] * 7, "b")
    ran = drain([RatedJob])
    assert sorted(job.account for job in ran) == ["a"] * 5 + ["b"]
    assert RatedJob.objects.filter(state=JobState.PENDING, attempts=0).count() == 2


@needs_postgresql("its JIT compiler")
def test_the_claiming_session_has_jit_off():
    # The limited claim's sorts are priced at the "disabled" cost on a session with sorting
    # off, far above jit_above_cost: PostgreSQL compiled each claim for 0.8 s before this.
    engine = engine_for("default")
    engine.prepare_claiming_session()
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone() == ("off",)


def test_a_round_cut_short_by_a_key_at_its_room_is_followed_by_one_reaching_the_rows_behind():
    jobs = enqueue(LimitedJob, *["a"] * 6, "b")
    statements = []
    fetch = type(engine := engine_for("default"))._fetch
    engine._fetch = lambda sql, params: statements.append(sql) or fetch(engine, sql, params)
    try:
        claimed = claim(LimitedJob, 3)  # the first walk (6 rows) sees only "a"
    finally:
        del engine._fetch
    assert sorted(job.pk for job in claimed) == [jobs[0].pk, jobs[1].pk, jobs[6].pk]
    assert sum("WITH busy" in sql for sql in statements) == 2


def test_a_round_that_saw_every_row_with_room_is_the_last():
    enqueue(LimitedJob, "a", "b")
    statements = []
    fetch = type(engine := engine_for("default"))._fetch
    engine._fetch = lambda sql, params: statements.append(sql) or fetch(engine, sql, params)
    try:
        assert len(claim(LimitedJob, 10)) == 2
    finally:
        del engine._fetch
    assert sum("WITH busy" in sql for sql in statements) == 1


@row_locks
def test_a_claim_skips_a_limited_row_another_session_holds_and_does_not_wait_for_it():
    """`run()` locks its row before the claim lock: a claim that waited for that row while
    holding the claim lock could deadlock with it, so it takes the rows it can lock now."""
    held, free = enqueue(LimitedJob, "a", "b")
    with row_held(LimitedJob.objects.filter(pk=held.pk)):
        began = time.monotonic()
        claimed = claim(LimitedJob, 5)
        waited = time.monotonic() - began
    assert [job.pk for job in claimed] == [free.pk]
    assert waited < 1, waited
    assert [job.pk for job in claim(LimitedJob, 5)] == [held.pk]


@row_locks  # a server that ends a session idle in a transaction: PostgreSQL's, MariaDB's
def test_a_worker_gone_silent_inside_a_claim_lets_go_of_the_claim_lock(settings):
    # A worker cut off between its claim and the COMMIT leaves its session idle in the
    # transaction, holding the model's claim lock; every other claim of the model waits on
    # it. The server ends such a session after JOBS_NETWORK_TIMEOUT, as it would the
    # session of a worker whose network went away (the server cannot tell the two apart).
    from django.db import connections
    from django.db.utils import DatabaseError

    settings.JOBS_NETWORK_TIMEOUT = 2
    enqueue(LimitedJob, "a")
    silent = connections.create_connection("default")
    try:
        gone_quiet = type(engine_for("default"))(silent)
        gone_quiet.prepare_claiming_session()
        silent.set_autocommit(False)
        gone_quiet.lock_claims(LimitedJob)  # ... and then says nothing more
        began, claimed = time.monotonic(), []

        def other_worker():
            claimed.extend(claim(LimitedJob, 5))  # waits on the lock until that session ends
            connection.close()

        thread = threading.Thread(target=other_worker)
        thread.start()
        thread.join(15)
        waited = time.monotonic() - began
        assert not thread.is_alive(), "the claim lock was never let go"
        assert [job.account for job in claimed] == ["a"]
        assert waited > 1.5, waited  # it did wait for the silent session's end
        with (
            # PostgreSQL says why; MariaDB that it hung up (or, later, that it is gone)
            pytest.raises(DatabaseError, match=r"idle-in-transaction timeout|inactivity|gone"),
            silent.cursor() as cursor,
        ):
            cursor.execute("SELECT 1")
    finally:
        silent.close()
    thread.join()
