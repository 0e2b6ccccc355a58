"""Unique jobs where operators touch them: the admin's enqueue and requeue, `jobs enqueue`
and `jobs retry`. A row whose key already has an active job is skipped and said so, never a
500 or a traceback."""

import pytest
from django.contrib import messages
from django.urls import reverse

from jobs.models import JobState
from tests.admin.test_jobs import messages_of
from tests.conftest import manage
from tests.testapp.models import UniqueJob

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:testapp_uniquejob_changelist")


def unique_job(state: str, account: str = "acme") -> UniqueJob:
    job = UniqueJob.objects.create(account=account, report="monthly")
    UniqueJob.objects.filter(pk=job.pk).update(state=state)
    return job


def act(client, action: str, *jobs):
    data = {"action": action, "_selected_action": [job.pk for job in jobs], "index": "0"}
    return client.post(CHANGELIST, {**data, "post": "yes"})


def test_the_admin_enqueue_skips_a_row_whose_key_is_active_and_says_why(admin_client):
    unique_job(JobState.PENDING)
    second, other = unique_job(JobState.NEW), unique_job(JobState.NEW, account="globex")
    response = act(admin_client, "enqueue_jobs", second, other)
    assert messages_of(response) == [
        (
            messages.SUCCESS,
            "1 job enqueued. 1 skipped: only new jobs can be enqueued, and not while a job "
            "with the same key is pending or running.",
        )
    ]
    assert UniqueJob.objects.get(pk=second.pk).state == JobState.NEW
    assert UniqueJob.objects.get(pk=other.pk).state == JobState.PENDING


def test_the_admin_requeue_skips_a_row_whose_key_is_active_and_moves_the_others(admin_client):
    unique_job(JobState.RUNNING)
    blocked, free = unique_job(JobState.FAILED), unique_job(JobState.FAILED, account="globex")
    response = act(admin_client, "requeue_jobs", blocked, free)
    assert response.status_code == 302
    assert messages_of(response)[0][1].startswith("1 job requeued. 1 skipped")
    assert UniqueJob.objects.get(pk=blocked.pk).state == JobState.FAILED
    assert UniqueJob.objects.get(pk=free.pk).state == JobState.PENDING


@pytest.mark.django_db(transaction=True)
def test_jobs_enqueue_of_a_duplicate_is_one_line_naming_the_active_job():
    active = unique_job(JobState.PENDING)
    result = manage(
        "jobs",
        "enqueue",
        "testapp.UniqueJob",
        "--field",
        "account=acme",
        "--field",
        "report=monthly",
    )
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("CommandError: invalid testapp.UniqueJob: ")
    assert active.label in line
    assert UniqueJob.objects.filter(state=JobState.PENDING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_jobs_retry_requeues_what_it_can_and_leaves_a_row_whose_key_is_active():
    unique_job(JobState.PENDING)
    blocked, free = unique_job(JobState.FAILED), unique_job(JobState.FAILED, account="globex")
    result = manage("jobs", "retry", "--model", "testapp.UniqueJob")
    assert result.returncode == 0, result.stderr
    assert UniqueJob.objects.get(pk=blocked.pk).state == JobState.FAILED
    assert UniqueJob.objects.get(pk=free.pk).state == JobState.PENDING
