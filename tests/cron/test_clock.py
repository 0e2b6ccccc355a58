"""The clock: each slot of each schedule is enqueued once, on time, by whichever clock is first."""

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings

from jobs.cron.clock import Clock, enqueue_slot, prune_runs, schedule_statuses
from jobs.cron.schedules import configured_schedules, parse_schedule
from jobs.models import JobState, LatencyProbe, ScheduledRun
from project.instances.models import InstanceProvision
from tests.conftest import NOON, row_locks
from tests.factories import InstanceFactory
from tests.testapp.models import RecordingJob

NIGHTLY = {"job": "testapp.RecordingJob", "cron": "0 3 * * *", "timezone": "UTC"}
MINUTELY = {"job": "testapp.RecordingJob", "every": "1m", "fields": {"label_text": "minutely"}}


def scheduler(**specs) -> Clock:
    return Clock([parse_schedule(name, spec) for name, spec in specs.items()])


@pytest.mark.django_db
def test_a_due_slot_is_enqueued_once_with_the_schedules_fields(django_assert_num_queries):
    clock = scheduler(
        minutely={**MINUTELY, "queue": "reports", "priority": 5, "fields": {"label_text": "hi"}}
    )
    (job,) = clock.tick(NOON + timedelta(seconds=2))
    assert job.state == JobState.PENDING
    assert job.label_text == "hi"
    assert (job.queue, job.priority, job.run_at) == ("reports", 5, NOON + timedelta(seconds=2))
    run = ScheduledRun.objects.get()
    assert (run.schedule, run.slot, run.job_pk, run.late) == ("minutely", NOON, str(job.pk), False)
    with django_assert_num_queries(0):
        assert clock.tick(NOON + timedelta(seconds=30)) == []
    assert len(clock.tick(NOON + timedelta(minutes=1))) == 1
    assert RecordingJob.objects.count() == 2


@pytest.mark.django_db
def test_a_second_clock_does_not_enqueue_a_slot_the_first_did():
    first, second = scheduler(minutely=MINUTELY), scheduler(minutely=MINUTELY)
    assert len(first.tick(NOON)) == 1
    assert second.tick(NOON + timedelta(seconds=1)) == []
    assert RecordingJob.objects.count() == ScheduledRun.objects.count() == 1


@pytest.mark.django_db
def test_a_new_schedule_waits_for_its_next_slot_rather_than_firing_late():
    clock = scheduler(nightly=NIGHTLY)
    assert clock.tick(NOON) == []  # 03:00 was nine hours ago, and it never ran before
    tomorrow = NOON.replace(hour=3) + timedelta(days=1)
    assert clock.seconds_to_next_slot(NOON) == (tomorrow - NOON).total_seconds()
    (job,) = clock.tick(tomorrow + timedelta(seconds=1))
    assert job.run_at == tomorrow + timedelta(seconds=1)
    assert ScheduledRun.objects.get().slot == tomorrow


@pytest.mark.django_db
def test_missed_slots_run_once_when_a_clock_comes_back():
    three_am = NOON.replace(hour=3)
    scheduler(nightly=NIGHTLY).tick(three_am)
    back = three_am + timedelta(days=3, hours=2)  # three nights missed
    restarted = scheduler(nightly=NIGHTLY)
    (job,) = restarted.tick(back)
    assert job.run_at == back
    late = ScheduledRun.objects.get(late=True)
    assert late.slot == three_am + timedelta(days=3)
    assert scheduler(nightly=NIGHTLY).tick(back + timedelta(minutes=1)) == []
    assert RecordingJob.objects.count() == 2


@pytest.mark.django_db
def test_missed_slots_are_skipped_when_the_schedule_says_so(caplog):
    three_am = NOON.replace(hour=3)
    skipping = {**NIGHTLY, "missed": "skip"}
    scheduler(nightly=skipping).tick(three_am)
    with caplog.at_level(logging.WARNING, logger="jobs.timesource"):
        assert scheduler(nightly=skipping).tick(three_am + timedelta(days=2, hours=1)) == []
    assert "schedule nightly missed its slot" in caplog.text
    assert "skipped" in caplog.text
    assert RecordingJob.objects.count() == 1


@pytest.mark.django_db
def test_a_slot_a_few_minutes_late_is_still_on_time():
    clock = scheduler(nightly=NIGHTLY)
    three_am = NOON.replace(hour=3) + timedelta(days=1)
    (job,) = clock.tick(three_am + timedelta(minutes=4))  # a deploy restarted every worker
    assert job.state == JobState.PENDING
    assert ScheduledRun.objects.get().slot == three_am
    assert not ScheduledRun.objects.get().late


@pytest.mark.django_db
def test_a_failing_schedule_is_logged_and_the_others_still_run(monkeypatch, caplog):
    clock = scheduler(broken={**MINUTELY, "fields": {"label_text": "broken"}}, fine=MINUTELY)

    def refuse(job, **kwargs):
        if job.label_text == "broken":
            raise RuntimeError("provider down")
        return original(job, **kwargs)

    original = RecordingJob.enqueue
    monkeypatch.setattr(RecordingJob, "enqueue", refuse)
    with caplog.at_level(logging.ERROR, logger="jobs.timesource"):
        enqueued = clock.tick(NOON)
    assert [job.label_text for job in enqueued] == ["minutely"]
    (record,) = caplog.records
    assert record.schedule == "broken"
    assert "RuntimeError: provider down" in caplog.text
    assert list(ScheduledRun.objects.values_list("schedule", flat=True)) == ["fine"]
    assert clock.tick(NOON + timedelta(seconds=5)) == []  # logged once per slot, not per tick


@pytest.mark.django_db
@override_settings(JOBS_QUEUES={"urgent": {"sla": "30s", "probe": True}})
def test_probed_queues_get_a_probe_every_minute():
    clock = Clock(configured_schedules())
    for minute in range(3):
        clock.tick(NOON + timedelta(minutes=minute, seconds=40))  # the clock restarted late
    beats = LatencyProbe.objects.order_by("run_at")
    assert [(beat.queue, beat.run_at) for beat in beats] == [
        ("urgent", NOON + timedelta(minutes=minute, seconds=40)) for minute in range(3)
    ]  # due when enqueued: the clock's lateness is not counted as the queue's latency


@pytest.mark.django_db
def test_statuses_give_each_schedules_last_and_next_run():
    nightly, minutely = parse_schedule("nightly", NIGHTLY), parse_schedule("minutely", MINUTELY)
    Clock([minutely]).tick(NOON)
    statuses = schedule_statuses([nightly, minutely], NOON + timedelta(seconds=10))
    assert statuses[0].last_run is None
    assert statuses[0].next_slot == NOON.replace(hour=3) + timedelta(days=1)
    assert statuses[1].last_run.slot == NOON
    assert statuses[1].next_slot == NOON + timedelta(minutes=1)


@pytest.mark.django_db
def test_pruning_keeps_each_schedules_latest_slot():
    minutely = parse_schedule("minutely", MINUTELY)
    nightly = parse_schedule("nightly", NIGHTLY)
    long_ago = NOON - timedelta(days=30)
    enqueue_slot(nightly, long_ago.replace(hour=3), long_ago, late=False)
    for minute in range(3):
        enqueue_slot(minutely, long_ago + timedelta(minutes=minute), long_ago, late=False)
    enqueue_slot(minutely, NOON, NOON, late=False)
    assert prune_runs(NOON) == 3
    assert sorted(ScheduledRun.objects.values_list("schedule", "slot")) == [
        ("minutely", NOON),
        ("nightly", long_ago.replace(hour=3)),
    ]


@pytest.mark.django_db(transaction=True)
def test_three_clocks_ticking_at_once_for_hours_enqueue_each_slot_exactly_once():
    """Three schedulers on three connections tick in lockstep over six simulated hours."""
    specs = {
        "minutely": MINUTELY,
        "five-minutes": {"job": "testapp.RecordingJob", "cron": "*/5 * * * *"},
        "hourly": {**NIGHTLY, "cron": "@hourly"},
    }
    ticks = [NOON + timedelta(seconds=20 * step) for step in range(6 * 180)]
    barrier = threading.Barrier(3, timeout=30)  # a clock that fails breaks it for the others

    def clock(_) -> Counter:
        enqueued = Counter()
        schedulers = scheduler(**specs)
        try:
            for now in ticks:
                barrier.wait()
                enqueued.update(job.label_text or "cron" for job in schedulers.tick(now))
        finally:
            connection.close()
        return enqueued

    with ThreadPoolExecutor(max_workers=3) as pool:
        enqueued = list(pool.map(clock, range(3)))  # re-raises what a clock raised
    slots = Counter(ScheduledRun.objects.values_list("schedule", flat=True))
    assert slots == {"minutely": 360, "five-minutes": 72, "hourly": 6}
    assert RecordingJob.objects.count() == 438  # no job left behind by a losing clock
    assert sum(enqueued, Counter()) == {"minutely": 360, "cron": 72 + 6}


@row_locks
@pytest.mark.django_db(transaction=True)
def test_a_clock_that_dies_mid_slot_leaves_the_slot_to_the_next_one():
    """A clock's claim on a slot is its uncommitted row: gone if it dies, so no lock lingers."""
    minutely = parse_schedule("minutely", MINUTELY)
    inside = threading.Event()
    die = threading.Event()

    def doomed_clock() -> None:
        try:
            with transaction.atomic():
                enqueue_slot(minutely, NOON, NOON, late=False)
                inside.set()
                die.wait(10)
                raise ConnectionResetError("killed mid-slot")
        except ConnectionResetError:
            pass
        finally:
            connection.close()

    thread = threading.Thread(target=doomed_clock)
    thread.start()
    inside.wait(10)
    threading.Timer(0.5, die.set).start()
    (job,) = scheduler(minutely=MINUTELY).tick(NOON + timedelta(seconds=1))  # waits, then wins
    thread.join()
    assert ScheduledRun.objects.get().job_pk == str(job.pk)
    assert RecordingJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_foreign_key_is_given_by_its_targets_key_and_a_missing_row_is_logged(caplog):
    web = InstanceFactory(name="web-7")
    spec = {"job": "instances.InstanceProvision", "every": "1m", "fields": {"instance": web.pk}}
    (job,) = scheduler(provision=spec).tick(NOON)
    assert job.instance == web
    gone = {**spec, "fields": {"instance": web.pk + 1000}}
    with caplog.at_level(logging.ERROR, logger="jobs.timesource"):
        assert scheduler(gone=gone).tick(NOON) == []
    assert "schedule gone could not enqueue its slot" in caplog.text
    assert "IntegrityError" in caplog.text
    assert not ScheduledRun.objects.filter(schedule="gone").exists()
    assert InstanceProvision.objects.count() == 1
