"""Each attempt's growth of the worker's resident memory, on the job's row; with
`JOBS_TRACE_MEMORY`, the lines that allocated the most in an attempt that grew past the
threshold, at the end of its log. Real allocations, a real worker loop."""

import pytest
from django.test import override_settings
from django.urls import reverse

from jobs.checks import check_settings
from jobs.contrib.tasks.api import task
from jobs.contrib.tasks.models import TaskJob
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop

pytestmark = pytest.mark.django_db(transaction=True)

# Kept for the life of the test process, as a leak is: each test's allocation then raises the
# process's peak above every earlier one's.
LEAKED: list[bytearray] = []


@task()
def keeps_memory(mb: int) -> None:
    LEAKED.append(bytearray(mb * 1024 * 1024))  # touched: resident, not only reserved


@task()
def keeps_nothing() -> None:
    bytearray(1024)


def run(result) -> TaskJob:
    WorkerLoop(models=[TaskJob], threads=1, burst=True).run()
    return TaskJob.objects.get(pk=result.id)


def test_an_attempt_that_keeps_memory_shows_its_growth_and_one_that_does_not_shows_little():
    leaky = run(keeps_memory.enqueue(100))
    tidy = run(keeps_nothing.enqueue())
    assert leaky.state == JobState.SUCCEEDED
    assert leaky.memory_growth_kb >= 50 * 1024  # at least half: the peak may be above now
    assert abs(tidy.memory_growth_kb) < 10 * 1024


@override_settings(JOBS_TRACE_MEMORY=True, JOBS_TRACE_MEMORY_THRESHOLD_MB=20)
def test_a_traced_attempt_past_the_threshold_names_the_line_that_allocated():
    leaky = run(keeps_memory.enqueue(100))
    assert "the lines that allocated the most meanwhile (tracemalloc)" in leaky.log
    assert "test_memory.py" in leaky.log
    small = run(keeps_memory.enqueue(1))
    assert "tracemalloc" not in small.log


def test_the_job_page_shows_the_growth(admin_client):
    leaky = run(keeps_memory.enqueue(100))
    page = admin_client.get(reverse("admin:jobs_tasks_taskjob_change", args=[leaky.pk]))
    assert (
        "MB: how far the latest attempt raised its worker&#x27;s peak RSS" in page.content.decode()
    )


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("JOBS_TRACE_MEMORY", "yes", "JOBS_TRACE_MEMORY is 'yes'; it must be True or False."),
        ("JOBS_TRACE_MEMORY_THRESHOLD_MB", 0, "JOBS_TRACE_MEMORY_THRESHOLD_MB is 0; it must be"),
        ("JOBS_TRACE_MEMORY_THRESHOLD_MB", "big", "JOBS_TRACE_MEMORY_THRESHOLD_MB is 'big'"),
    ],
)
def test_a_bad_memory_tracing_setting_is_a_check_error(settings, setting, value, message):
    setattr(settings, setting, value)
    (error,) = [e for e in check_settings() if e.id == "jobs.E018"]
    assert error.msg.startswith(message)
