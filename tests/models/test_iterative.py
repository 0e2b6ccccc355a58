"""IterativeJob in one process: resume from the cursor, fenced and throttled saves, and every
way an iteration stops between items (docs/workflows.md, "Iteration")."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from jobs import timesource
from jobs.models import IterativeJob, JobState
from jobs.models.iterative import iteration_problems
from tests.testapp.models import CountingIteration, IterationItem

pytestmark = pytest.mark.django_db


def enqueued(**fields) -> CountingIteration:
    return CountingIteration.objects.create(**fields).enqueue()


def items_done_by(job: CountingIteration) -> list[int]:
    return list(
        IterationItem.objects.filter(job_id=job.pk).order_by("pk").values_list("item", flat=True)
    )


@contextmanager
def after_item(number: int, action: Callable[[CountingIteration], None]) -> Iterator[None]:
    """Call `action(job)` right after each() has recorded item `number` (in each(), so as
    the attempt runs)."""

    def receiver(sender, instance, created, **kwargs):
        if created and instance.item == number:
            action(CountingIteration.objects.get(pk=instance.job_id))

    post_save.connect(receiver, sender=IterationItem, weak=False)
    try:
        yield
    finally:
        post_save.disconnect(receiver, sender=IterationItem)


def cursor_saves(queries: CaptureQueriesContext) -> int:
    return sum(
        1
        for query in queries.captured_queries
        if query["sql"].startswith("UPDATE")
        and connection.ops.quote_name("items_done") in query["sql"]
    )


def test_a_fresh_iteration_does_every_item_once_and_succeeds_with_its_progress():
    job = enqueued(count=10).run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == list(range(10))
    assert (row.state, row.attempts, row.cursor, row.items_done) == (JobState.SUCCEEDED, 1, 9, 10)
    assert (row.progress_done, row.progress_total) == (10, 10)


def test_an_iteration_resumes_after_its_saved_cursor_and_counts_progress_over_attempts():
    job = enqueued(count=10)
    CountingIteration.objects.filter(pk=job.pk).update(cursor=4, items_done=5)
    job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == [5, 6, 7, 8, 9]
    assert (row.state, row.cursor, row.items_done) == (JobState.SUCCEEDED, 9, 10)
    assert (row.progress_done, row.progress_total) == (10, 10)


def test_the_cursor_is_saved_at_most_once_per_interval_and_once_at_the_end(monkeypatch):
    monkeypatch.setattr(CountingIteration, "cursor_save_interval", 3600)
    job = enqueued(count=50)
    with CaptureQueriesContext(connection) as queries:
        job.run()
    assert cursor_saves(queries) == 1
    assert CountingIteration.objects.get(pk=job.pk).cursor == 49


def test_with_no_save_interval_the_cursor_is_saved_after_every_item(monkeypatch):
    monkeypatch.setattr(CountingIteration, "cursor_save_interval", 0)
    job = enqueued(count=20)
    with CaptureQueriesContext(connection) as queries:
        job.run()
    assert cursor_saves(queries) == 20


def test_a_cancel_request_stops_between_items_and_ends_cancelled_with_the_cursor_saved(
    monkeypatch,
):
    monkeypatch.setattr("jobs.models.job.CANCEL_CHECK_INTERVAL", 0)  # read the row every item
    job = enqueued(count=10)
    with after_item(4, lambda job: CountingIteration.objects.filter(pk=job.pk).cancel()):
        job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == [0, 1, 2, 3, 4]
    assert (row.state, row.cursor, row.items_done, row.error_type) == (
        JobState.CANCELLED,
        4,
        5,
        "",
    )


def test_max_iteration_seconds_hands_the_row_back_uncounted_and_the_next_attempt_finishes(
    monkeypatch,
):
    monkeypatch.setattr(CountingIteration, "max_iteration_seconds", 0.12)
    job = enqueued(count=10, item_seconds=0.05)
    before = timesource.now()
    job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    first = items_done_by(job)
    assert 1 <= len(first) < 10
    assert first == list(range(len(first)))
    assert (row.state, row.attempts, row.claimed_by) == (JobState.PENDING, 0, "")
    assert (row.cursor, row.items_done) == (len(first) - 1, len(first))
    assert before <= row.run_at <= timesource.now()

    monkeypatch.setattr(CountingIteration, "max_iteration_seconds", None)
    row.run()
    row.refresh_from_db()
    assert items_done_by(job) == list(range(10))  # none redone, none skipped
    assert (row.state, row.attempts, row.items_done) == (JobState.SUCCEEDED, 1, 10)


def test_a_worker_shutting_down_stops_the_iteration_at_the_next_item_uncounted():
    job = enqueued(count=10)
    with after_item(3, lambda _: job.request_shutdown()):
        job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == [0, 1, 2, 3]
    assert (row.state, row.attempts, row.cursor, row.items_done) == (JobState.PENDING, 0, 3, 4)


def test_throttle_snoozes_the_job_for_its_delay_without_holding_the_thread():
    job = enqueued(count=10, pause_after=3, throttle_seconds=30)
    job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == [0, 1, 2]
    assert (row.state, row.attempts, row.cursor, row.items_done) == (JobState.PENDING, 0, 2, 3)
    wait = row.run_at - timesource.now()
    assert timedelta(seconds=25) < wait <= timedelta(seconds=30)


def test_an_error_in_each_fails_the_attempt_keeping_the_cursor_and_a_requeue_resumes_there():
    job = enqueued(count=10, fail_at=6)
    job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert (row.state, row.cursor, row.items_done) == (JobState.FAILED, 5, 6)
    assert row.error_type == "tests.testapp.models.Boom"

    CountingIteration.objects.filter(pk=job.pk).update(fail_at=None)
    row = CountingIteration.objects.get(pk=job.pk).requeue().run()
    row.refresh_from_db()
    assert items_done_by(job) == list(range(10))
    assert (row.state, row.cursor, row.items_done) == (JobState.SUCCEEDED, 9, 10)


def test_a_save_that_finds_the_row_taken_stops_the_iteration_and_moves_nothing(monkeypatch):
    monkeypatch.setattr(CountingIteration, "cursor_save_interval", 0)
    job = enqueued(count=10)

    def rescued_and_claimed_by_another(job):
        CountingIteration.objects.filter(pk=job.pk).update(claimed_by="elsewhere:1", attempts=2)

    with after_item(3, rescued_and_claimed_by_another):
        job.run()
    row = CountingIteration.objects.get(pk=job.pk)
    assert items_done_by(job) == [0, 1, 2, 3]
    assert (row.state, row.claimed_by, row.attempts) == (JobState.RUNNING, "elsewhere:1", 2)
    assert (row.cursor, row.items_done) == (2, 3)  # item 3's save was refused


def test_a_well_declared_iteration_has_no_problems_and_a_misdeclared_one_names_them():
    assert iteration_problems(CountingIteration) == []

    class Misdeclared(IterativeJob):
        position = CountingIteration._meta.get_field("count").clone()
        cursor_field = "cursor"
        cursor_save_interval = -1
        max_iteration_seconds = 0

        class Meta:
            abstract = True
            app_label = "testapp"

        def perform(self) -> None:
            pass

    assert iteration_problems(Misdeclared) == [
        "cursor_field names 'cursor': no field of this model to keep the cursor in. Add one "
        "(e.g. cursor = models.BigIntegerField(null=True)), or set cursor_field to the field's "
        "name.",
        "cursor_save_interval must be seconds (0 or more), got -1.",
        "max_iteration_seconds must be None or positive seconds, got 0.",
        "items() is not defined: an iterative job needs items() and each().",
        "each() is not defined: an iterative job needs items() and each().",
        "perform() is redefined: an iterative job's perform() runs the items.",
    ]
    Misdeclared.cursor_field = "position"
    assert iteration_problems(Misdeclared)[0] == (
        "cursor_field 'position' must be nullable: None means not started."
    )


def test_check_reports_an_iterative_job_without_a_cursor_column():
    from django.test.utils import isolate_apps

    from jobs.checks import job_model_errors
    from jobs.models import IterativeJob

    with isolate_apps("tests.testapp"):

        class NoCursor(IterativeJob):
            class Meta:
                app_label = "testapp"

            def items(self, cursor):
                return iter(())

            def each(self, item):
                pass

        (error,) = [e for e in job_model_errors(NoCursor) if e.id == "jobs.E017"]
    assert error.msg.startswith("testapp.NoCursor.cursor_field names 'cursor'")
