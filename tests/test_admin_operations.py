"""Operating on jobs from the admin: buttons, bulk actions, the audit trail, secrets."""

from datetime import timedelta

import pytest
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from jobs.models import MASK, JobState, Worker
from project.instances.models import InstanceProvision
from tests.factories import StepJobFactory
from tests.test_admin import (
    CHANGELIST,
    change_url,
    failed_provision,
    messages_of,
    provision_in,
    run_action,
    staff_user,
    state_of,
)
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db


def operate_url(job, operation: str) -> str:
    return reverse("admin:instances_instanceprovision_operate", args=[job.pk, operation])


REQUEUE_FAILED = reverse("admin:instances_instanceprovision_requeue_failed")


@pytest.mark.parametrize(
    ("state", "offered"),
    [
        (JobState.NEW, ["run_now", "cancel"]),
        (JobState.PENDING, ["retry_now", "run_now", "cancel"]),
        (JobState.RUNNING, ["cancel"]),
        (JobState.FAILED, ["requeue"]),
        (JobState.CANCELLED, ["requeue"]),
        (JobState.SUCCEEDED, []),
    ],
)
def test_a_job_page_offers_the_operations_its_state_allows(admin_client, state, offered):
    job = provision_in(state)
    page = admin_client.get(change_url(job)).content.decode()
    shown = [
        name
        for name in ("run_now", "retry_now", "cancel", "requeue")
        if f"/operate/{name}/" in page
    ]
    assert sorted(shown) == sorted(offered)


def test_requeue_from_the_job_page_is_audited_and_shown_there(admin_client, admin_user):
    job = failed_provision()
    response = admin_client.post(operate_url(job, "requeue"))
    assert response.status_code == 302
    assert response["Location"] == change_url(job)
    assert state_of(job) == JobState.PENDING
    (entry,) = LogEntry.objects.filter(object_id=str(job.pk))
    assert (entry.user, entry.get_change_message()) == (admin_user, "Requeue: failed → pending")
    page = admin_client.get(change_url(job)).content.decode()
    assert "Requeue: failed → pending" in page
    assert f"by {admin_user}" in page


def test_operations_are_post_only(admin_client):
    job = failed_provision()
    assert admin_client.get(operate_url(job, "requeue")).status_code == 405
    assert admin_client.get(REQUEUE_FAILED).status_code == 405
    assert state_of(job) == JobState.FAILED


def test_an_unknown_operation_or_job_is_not_found(admin_client):
    job = failed_provision()
    assert admin_client.post(operate_url(job, "explode")).status_code == 404
    missing = reverse("admin:instances_instanceprovision_operate", args=[999999, "requeue"])
    assert admin_client.post(missing).status_code == 404


def test_staff_with_only_the_view_permission_cannot_operate(client, django_user_model):
    client.force_login(staff_user(django_user_model, "view_instanceprovision"))
    job = failed_provision()
    assert client.post(operate_url(job, "requeue")).status_code == 403
    assert client.post(REQUEUE_FAILED).status_code == 403
    assert "/operate/" not in client.get(change_url(job)).content.decode()
    assert state_of(job) == JobState.FAILED
    assert not LogEntry.objects.exists()


def test_operating_needs_a_login(client):
    job = failed_provision()
    response = client.post(operate_url(job, "requeue"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert state_of(job) == JobState.FAILED


def test_requeue_all_failed_requeues_every_failed_job_of_the_model(admin_client):
    failed = [failed_provision(f"Bad_{n}!") for n in range(3)]
    succeeded = provision_in(JobState.SUCCEEDED)
    response = admin_client.post(REQUEUE_FAILED)
    assert response["Location"] == CHANGELIST
    assert messages_of(response) == [(messages.SUCCESS, "3 jobs requeued.")]
    assert [state_of(job) for job in failed] == [JobState.PENDING] * 3
    assert state_of(succeeded) == JobState.SUCCEEDED
    assert LogEntry.objects.count() == 3


def test_retry_now_action_brings_scheduled_jobs_forward_and_skips_the_rest(admin_client):
    later = provision_in(JobState.PENDING)
    InstanceProvision.objects.filter(pk=later.pk).update(run_at=later.run_at + timedelta(hours=1))
    succeeded = provision_in(JobState.SUCCEEDED)
    response = run_action(admin_client, "retry_now_jobs", later, succeeded)
    assert messages_of(response) == [
        (
            messages.SUCCESS,
            "1 job moved to now. 1 skipped: only scheduled (pending, due later) jobs can be "
            "moved to now.",
        )
    ]
    assert InstanceProvision.objects.runnable().filter(pk=later.pk).exists()
    entry = LogEntry.objects.get(object_id=str(later.pk))
    assert entry.get_change_message() == "Retry now: scheduled → runnable now"


def test_run_now_action_performs_the_job_here_and_reports_its_outcome(admin_client):
    job = provision_in(JobState.PENDING)
    response = run_action(admin_client, "run_now_jobs", job)
    assert messages_of(response) == [(messages.SUCCESS, "1 job run (1 succeeded).")]
    assert state_of(job) == JobState.SUCCEEDED
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert entry.get_change_message() == "Run now: pending → succeeded"


def test_a_job_page_shows_progress_and_its_log_escaped(admin_client):
    job = StepJobFactory(steps=4, enqueue=True).run()
    StepJob.objects.filter(pk=job.pk).update(progress_done=1, log="<script>alert(1)</script> step")
    url = reverse("admin:testapp_stepjob_change", args=[job.pk])
    page = admin_client.get(url).content.decode()
    assert '<progress class="job-progress" value="1" max="4"></progress> 1 of 4 (25%)' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; step" in page
    assert "<script>alert(1)</script>" not in page


def test_sensitive_fields_are_masked_on_the_list_and_the_job_page(admin_client):
    job = StepJobFactory(enqueue=True)
    listing = admin_client.get(reverse("admin:testapp_stepjob_changelist")).content.decode()
    page = admin_client.get(reverse("admin:testapp_stepjob_change", args=[job.pk]))
    assert job.api_token not in listing
    assert MASK in listing
    assert job.api_token not in page.content.decode()
    assert "api_token" not in page.context["adminform"].form.fields


def test_the_worker_filter_lists_jobs_a_worker_process_claimed(admin_client):
    mine = provision_in(JobState.RUNNING)  # claimed_by elsewhere:1
    older = provision_in(JobState.SUCCEEDED)
    other = provision_in(JobState.RUNNING)
    # A row claimed before 0.2 named the thread too; a pid that merely starts alike is not it.
    InstanceProvision.objects.filter(pk=older.pk).update(claimed_by="elsewhere:1:jobs-1")
    InstanceProvision.objects.filter(pk=other.pk).update(claimed_by="elsewhere:12")
    Worker.register("elsewhere:1", queues=None, threads=1, supervisor=None)
    response = admin_client.get(CHANGELIST, {"worker": "elsewhere:1"})
    assert sorted(job.pk for job in response.context["cl"].result_list) == [mine.pk, older.pk]


def test_the_finished_filter_keeps_recent_jobs(admin_client, frozen):
    recent = provision_in(JobState.SUCCEEDED)
    old = provision_in(JobState.SUCCEEDED)
    InstanceProvision.objects.filter(pk=old.pk).update(finished_at=frozen.now - timedelta(days=2))
    response = admin_client.get(CHANGELIST, {"finished_within": "24h"})
    assert [job.pk for job in response.context["cl"].result_list] == [recent.pk]
