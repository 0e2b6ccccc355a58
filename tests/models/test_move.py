"""`JobQuerySet.move()`: pending and waiting jobs change queue and/or priority and keep their
place otherwise; nothing else moves, and bad targets are refused before anything changes."""

import re
from datetime import timedelta

import pytest
from django.db import transaction

from jobs.models import JobState
from jobs.testing import drain
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db


def snapshot(job) -> tuple:
    job.refresh_from_db()
    return (job.state, job.queue, job.priority, job.run_at, job.requested_at, job.attempts)


def test_pending_and_waiting_jobs_move_and_keep_their_place():
    due = RecordingJob.objects.create().enqueue(queue="small")
    later = RecordingJob.objects.create().enqueue(queue="small", delay=timedelta(hours=1))
    waiting = RecordingJob.objects.create().enqueue(queue="small", after=[due])
    before = {job.pk: snapshot(job) for job in (due, later, waiting)}

    assert RecordingJob.objects.filter(queue="small").move(queue="big", priority=7) == 3

    for job in (due, later, waiting):
        state, queue, priority, run_at, requested_at, attempts = snapshot(job)
        assert (queue, priority) == ("big", 7)
        assert (state, run_at, requested_at, attempts) == (
            before[job.pk][0],
            *before[job.pk][3:],
        )


def test_new_running_and_finished_jobs_stay_where_they_are():
    new = RecordingJob.objects.create(queue="small")
    done = RecordingJob.objects.create().enqueue(queue="small").run()
    failed = RecordingJob.objects.create(fail=True).enqueue(queue="small").run()
    running = RecordingJob.objects.create().enqueue(queue="small")
    RecordingJob.objects.filter(pk=running.pk).update(state=JobState.RUNNING)
    before = {job.pk: snapshot(job) for job in (new, done, failed, running)}
    assert RecordingJob.objects.move(queue="big") == 0
    assert {job.pk: snapshot(job) for job in (new, done, failed, running)} == before


def test_only_the_priority_or_only_the_queue_can_change():
    job = RecordingJob.objects.create().enqueue(queue="small", priority=3)
    RecordingJob.objects.move(priority=-5)
    assert snapshot(job)[1:3] == ("small", -5)
    RecordingJob.objects.move(queue="big")
    assert snapshot(job)[1:3] == ("big", -5)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({}, "move() needs a queue, a priority or both"),
        ({"queue": "no spaces"}, "queue name 'no spaces' is invalid"),
        ({"queue": ""}, "queue name '' is invalid"),
        ({"priority": 101}, "priority 101 is out of range"),
        ({"priority": "high"}, "priority must be an integer"),
        ({"priority": True}, "priority must be an integer"),
    ],
)
def test_a_bad_target_is_refused_and_nothing_moves(target, message):
    job = RecordingJob.objects.create().enqueue(queue="small")
    before = snapshot(job)
    with pytest.raises(ValueError, match=re.escape(message)):
        RecordingJob.objects.move(**target)
    assert snapshot(job) == before


def test_a_moved_job_is_claimed_from_its_new_queue_in_its_old_order():
    first = RecordingJob.objects.create().enqueue(queue="small")
    second = RecordingJob.objects.create().enqueue(queue="small")
    RecordingJob.objects.create().enqueue(queue="big", delay=timedelta(minutes=1))
    RecordingJob.objects.filter(queue="small").move(queue="big")
    assert drain(queues=["small"]) == []
    assert [job.pk for job in drain(queues=["big"])] == [first.pk, second.pk]


@pytest.mark.django_db(transaction=True)
def test_a_move_wakes_the_new_queues_workers_on_commit(monkeypatch):
    from jobs.models import queryset

    woken = []
    monkeypatch.setattr(queryset, "wake_workers_on_commit", lambda db, hints: woken.append(hints))
    RecordingJob.objects.create().enqueue(queue="small", delay=timedelta(0))
    with transaction.atomic():
        RecordingJob.objects.move(queue="big")
    assert [hint[0] for hints in woken for hint in hints] == ["big"]
