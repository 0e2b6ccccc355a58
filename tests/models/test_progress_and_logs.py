"""What a running job tells the operator: progress, its log lines, and no secrets."""

import logging
import threading

import pytest

from jobs import execution, joblog
from jobs.models import JobState
from jobs.models.job import MASK
from jobs.runtime.worker import WorkerLoop
from tests.conftest import in_thread, wait_for
from tests.factories import StepJobFactory
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db(transaction=True)


def test_progress_and_log_are_kept_on_the_row_with_the_outcome():
    job = StepJobFactory(steps=3, enqueue=True).run()
    row = StepJob.objects.get(pk=job.pk)
    assert (row.state, row.progress_done, row.progress_total) == (JobState.SUCCEEDED, 3, 3)
    assert [line.split(": ", 1)[1] for line in row.log.splitlines()] == [
        f"{job.label} started (queue default, attempt 1 of 1)",
        f"step 1 of 3 with token {MASK}",
        f"step 2 of 3 with token {MASK}",
        f"step 3 of 3 with token {MASK}",
    ]


def test_progress_and_log_are_visible_while_the_job_runs():
    job = StepJobFactory(steps=40, step_seconds=0.1, enqueue=True)
    thread = in_thread(WorkerLoop(burst=True))
    try:
        wait_for(lambda: (StepJob.objects.get(pk=job.pk).progress_done or 0) >= 10, timeout=10)
        row = StepJob.objects.get(pk=job.pk)
        assert row.state == JobState.RUNNING
        assert row.progress_total == 40
        assert "step 10 of 40" in row.log
    finally:
        StepJob.objects.filter(pk=job.pk).cancel()
        thread.join()


def test_set_progress_writes_at_most_once_a_second(django_assert_max_num_queries):
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    with django_assert_max_num_queries(1):
        for done in range(1000):
            job.set_progress(done, 1000)
    assert StepJob.objects.get(pk=job.pk).progress_done == 0


def test_the_last_step_is_always_written():
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    job.set_progress(1, 2)
    job.set_progress(2, 2)
    assert StepJob.objects.get(pk=job.pk).progress_done == 2


@pytest.mark.parametrize(
    ("done", "total", "problem"),
    [
        (-1, None, "a count of 0 or more"),
        (1.5, None, "a count of 0 or more"),
        (True, None, "a count of 0 or more"),
        (3, 2, r"done \(3\) is more than total \(2\)"),
        (1, "10", "a whole-number total"),
    ],
)
def test_bad_progress_is_refused_and_nothing_is_written(done, total, problem):
    job = StepJobFactory(enqueue=True)
    execution.claim_for_run(job)
    with pytest.raises(ValueError, match=problem):
        job.set_progress(done, total)
    assert StepJob.objects.get(pk=job.pk).progress_done is None


def test_a_failed_attempt_keeps_its_log_in_the_history_with_secrets_masked():
    job = StepJobFactory(steps=3, fail_at=2, enqueue=True).run()
    row = StepJob.objects.get(pk=job.pk)
    assert row.state == JobState.FAILED
    assert job.api_token not in row.error_message + row.error_traceback + row.log
    assert row.error_message == f"step 2 refused token {MASK}"
    (entry,) = row.error_history
    assert "step 2 of 3" in entry["log"]
    assert job.api_token not in str(entry)


def test_a_new_attempt_starts_with_a_fresh_log_and_progress():
    job = StepJobFactory(steps=2, fail_at=2, max_attempts=2, enqueue=True).run()
    assert StepJob.objects.get(pk=job.pk).progress_done == 1
    StepJob.objects.filter(pk=job.pk).retry_now()
    WorkerLoop(burst=True).run()
    row = StepJob.objects.get(pk=job.pk)
    assert row.attempts == 2
    assert row.log.count("step 1 of 2") == 1


def test_a_long_log_keeps_its_newest_lines_within_the_limit():
    log = joblog.JobLog()
    for number in range(5000):
        log.add(f"line {number}")
    text = log.text()
    assert len(text) <= joblog.LOG_LIMIT + 100
    assert text.splitlines()[0].endswith("earlier line(s) dropped]")
    assert text.endswith("line 4999")


def test_lines_logged_by_other_threads_are_not_captured():
    other = logging.getLogger("elsewhere")
    with joblog.capturing(str) as log:
        thread = threading.Thread(target=lambda: other.warning("not mine"))
        thread.start()
        thread.join()
        other.warning("mine")
    assert "mine" in log.text()
    assert "not mine" not in log.text()
