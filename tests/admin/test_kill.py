"""The admin's "Kill" for a running job that ignores Cancel: offered on running jobs only,
always asked first (even for one job), then `kill_requested_at` is set and logged; it needs
the change permission. What the worker then does is tests/integration/test_kill.py's."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs import execution
from jobs.models import JobState
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db


def running_job() -> StepJob:
    job = StepJob.objects.create(steps=1).enqueue()
    execution.claim_for_run(job)
    return job


def kill_url(job) -> str:
    return reverse("admin:testapp_stepjob_operate", args=[job.pk, "kill"])


def test_a_running_jobs_page_offers_kill_and_it_asks_first(admin_client):
    job = running_job()
    page = admin_client.get(reverse("admin:testapp_stepjob_change", args=[job.pk]))
    assert 'value="kill"' in page.content.decode()

    asked = admin_client.post(kill_url(job), {"operation": "kill"})
    assert asked.status_code == 200
    text = asked.content.decode()
    assert "For a job that ignores Cancel" in text
    assert "Yes, kill it" in text
    assert StepJob.objects.get(pk=job.pk).kill_requested_at is None  # nothing yet

    done = admin_client.post(kill_url(job), {"operation": "kill", "post": "yes"})
    assert done.status_code == 302
    row = StepJob.objects.get(pk=job.pk)
    assert row.kill_requested_at is not None
    assert row.state == JobState.RUNNING  # its worker records the end
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert entry.change_message == "Kill: running → kill requested"


def test_kill_is_not_offered_for_jobs_that_are_not_running(admin_client):
    pending = StepJob.objects.create(steps=1).enqueue()
    page = admin_client.get(reverse("admin:testapp_stepjob_change", args=[pending.pk]))
    assert 'value="kill"' not in page.content.decode()
    admin_client.post(kill_url(pending), {"operation": "kill", "post": "yes"})
    assert StepJob.objects.get(pk=pending.pk).kill_requested_at is None


def test_the_kill_action_asks_first_and_skips_what_is_not_running(admin_client):
    jobs = [running_job(), StepJob.objects.create(steps=1).enqueue()]
    data = {"action": "kill_jobs", "index": "0", "_selected_action": [j.pk for j in jobs]}
    page = admin_client.post(reverse("admin:testapp_stepjob_changelist"), data)
    assert "Kill 2 selected step jobs?" in page.content.decode()
    admin_client.post(reverse("admin:testapp_stepjob_changelist"), {**data, "post": "yes"})
    assert [StepJob.objects.get(pk=j.pk).kill_requested_at is not None for j in jobs] == [
        True,
        False,
    ]


def test_kill_needs_the_change_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_stepjob"))
    client.force_login(viewer)
    job = running_job()
    assert client.post(kill_url(job), {"operation": "kill", "post": "yes"}).status_code == 403
    assert StepJob.objects.get(pk=job.pk).kill_requested_at is None
