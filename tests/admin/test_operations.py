"""Operating on jobs from the admin: buttons, bulk actions, the audit trail, secrets."""

import re
from datetime import timedelta

import pytest
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from jobs.models import JobState, Worker
from jobs.models.job import MASK
from project.instances.models import InstanceProvision
from tests.admin.test_jobs import (
    CHANGELIST,
    change_url,
    failed_provision,
    messages_of,
    pks,
    provision_in,
    run_action,
    staff_user,
    state_of,
)
from tests.conftest import NOON
from tests.factories import InstanceProvisionFactory, StepJobFactory
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db


def operate_url(job, operation: str) -> str:
    return reverse("admin:instances_instanceprovision_operate", args=[job.pk, operation])


REQUEUE_FAILED = reverse("admin:instances_instanceprovision_requeue_failed")
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def offered_on(client, job) -> list[str]:
    """The operations `job`'s page offers, as the names in their URLs."""
    page = client.get(change_url(job)).content.decode()
    return re.findall(r"/operate/(\w+)/", page)


def confirmation_form(response) -> list[tuple[str, str]]:
    """What the confirmation page's "Yes" button posts back."""
    assert response.status_code == 200
    assert response.templates[0].name == "admin/jobs/job_confirm_operation.html"
    found = HIDDEN.findall(response.content.decode())
    return [(name, value) for name, value in found if name != "csrfmiddlewaretoken"]


@pytest.mark.parametrize(
    ("state", "offered"),
    [
        (JobState.NEW, ["enqueue", "run_now", "cancel"]),
        (JobState.PENDING, ["run_now", "cancel"]),
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
        for name in ("enqueue", "run_now", "retry_now", "cancel", "requeue")
        if f"/operate/{name}/" in page
    ]
    assert sorted(shown) == sorted(offered)


def test_retry_now_is_offered_for_a_scheduled_job_only(admin_client, frozen):
    scheduled = InstanceProvisionFactory(enqueue__delay=timedelta(hours=1))
    due = provision_in(JobState.PENDING)
    assert offered_on(admin_client, scheduled) == ["retry_now", "run_now", "cancel"]
    assert offered_on(admin_client, due) == ["run_now", "cancel"]


def test_a_running_job_asked_to_stop_is_offered_kill_not_cancel_again(admin_client):
    job = provision_in(JobState.RUNNING)
    response = admin_client.post(operate_url(job, "cancel"))
    assert messages_of(response) == [
        (messages.SUCCESS, "1 job cancelled (1 running, asked to stop).")
    ]
    assert offered_on(admin_client, job) == ["kill"]  # for a job that does not stop
    assert ">Stop requested</span>" in admin_client.get(change_url(job)).content.decode()


def test_operations_are_buttons_coloured_by_what_they_do(admin_client):
    page = admin_client.get(change_url(provision_in(JobState.NEW))).content.decode()
    buttons = re.findall(
        r'<button type="submit" class="([^"]+)" name="operation" value="(\w+)"', page
    )
    assert buttons == [
        ("button job-operation default", "enqueue"),
        ("button job-operation ", "run_now"),
        ("button job-operation danger", "cancel"),
    ]


def test_enqueue_from_a_new_jobs_page_queues_it_and_is_audited(admin_client, admin_user, frozen):
    job = provision_in(JobState.NEW)
    response = admin_client.post(operate_url(job, "enqueue"))
    assert response["Location"] == change_url(job)
    assert messages_of(response) == [(messages.SUCCESS, "1 job enqueued.")]
    queued = InstanceProvision.objects.get(pk=job.pk)
    assert (queued.state, queued.requested_at, queued.run_at) == (JobState.PENDING, NOON, NOON)
    assert InstanceProvision.objects.runnable().filter(pk=job.pk).exists()
    (entry,) = LogEntry.objects.filter(object_id=str(job.pk))
    assert (entry.user, entry.get_change_message()) == (admin_user, "Enqueue: new → pending")


def test_enqueue_action_queues_the_selected_new_jobs_and_skips_the_rest(admin_client):
    new = [provision_in(JobState.NEW), provision_in(JobState.NEW)]
    failed = failed_provision()
    other_new = provision_in(JobState.NEW)
    response = run_action(admin_client, "enqueue_jobs", *new, failed, confirmed=False)
    assert messages_of(response) == [
        (messages.SUCCESS, "2 jobs enqueued. 1 skipped: only new jobs can be enqueued.")
    ]
    assert [state_of(job) for job in (*new, failed, other_new)] == [
        JobState.PENDING,
        JobState.PENDING,
        JobState.FAILED,
        JobState.NEW,
    ]


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
    assert admin_client.get(REQUEUE_FAILED).status_code == 200  # it asks: see below
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
    assert client.get(REQUEUE_FAILED).status_code == 403
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


def test_requeue_all_failed_is_a_button_that_opens_a_confirmation_not_an_add_link(admin_client):
    page = admin_client.get(CHANGELIST).content.decode()
    (link,) = re.findall(r'<a href="[^"]*requeue-failed/"[^>]*>', page)
    assert link.startswith(f'<a href="{REQUEUE_FAILED}" class="button default job-requeue-failed"')
    assert f'action="{REQUEUE_FAILED}"' not in page  # no form that acts on one click


def test_requeue_all_failed_asks_first_with_how_many_and_changes_nothing(admin_client):
    failed = [failed_provision(f"Bad_{n}!") for n in range(3)]
    provision_in(JobState.SUCCEEDED)
    response = admin_client.get(REQUEUE_FAILED)
    assert confirmation_form(response) == [("post", "yes")]
    page = response.content.decode()
    assert "Requeue all 3 failed instance provisions?" in page
    assert "Each goes back to pending, due now, with its attempts reset." in page
    for job in failed:
        assert f'href="{change_url(job)}">instance provision #{job.pk}</a>' in page
    assert f'href="{CHANGELIST}" class="button cancel-link">No, take me back</a>' in page
    assert [state_of(job) for job in failed] == [JobState.FAILED] * 3
    assert not LogEntry.objects.exists()


def test_requeue_all_failed_with_nothing_failed_offers_nothing_to_confirm(admin_client):
    provision_in(JobState.SUCCEEDED)
    response = admin_client.get(REQUEUE_FAILED)
    page = response.content.decode()
    assert "No failed instance provisions" in page
    assert "Nothing to requeue." in page
    assert 'name="post"' not in page


def test_requeue_all_failed_confirmation_counts_all_and_names_the_newest(admin_client, monkeypatch):
    monkeypatch.setattr("jobs.admin.jobs.CONFIRM_LISTED", 2)
    failed = [failed_provision(f"Bad_{n}!") for n in range(3)]
    page = admin_client.get(REQUEUE_FAILED).content.decode()
    assert "Requeue all 3 failed instance provisions?" in page
    assert [int(pk) for pk in re.findall(r">instance provision #(\d+)<", page)] == [
        failed[2].pk,
        failed[1].pk,
    ]
    assert "and 1 more" in page


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


# Bulk actions ask first, as Django's "Delete selected" does.


@pytest.mark.parametrize(
    ("action", "state", "title"),
    [
        ("requeue_jobs", JobState.FAILED, "Requeue 2 selected instance provisions?"),
        ("cancel_jobs", JobState.PENDING, "Cancel 2 selected instance provisions?"),
    ],
)
def test_a_bulk_action_on_more_than_one_job_asks_first_and_changes_nothing(
    admin_client, action, state, title
):
    jobs = [provision_in(state), provision_in(state)]
    response = run_action(admin_client, action, *jobs, confirmed=False)
    form = confirmation_form(response)
    assert ("action", action) in form
    assert sorted(int(pk) for name, pk in form if name == "_selected_action") == pks(*jobs)
    assert ("post", "yes") in form
    assert title in response.content.decode()
    assert [state_of(job) for job in jobs] == [state, state]
    assert not LogEntry.objects.exists()


def test_confirming_a_bulk_action_applies_it_to_the_selection(admin_client):
    jobs = [provision_in(JobState.PENDING), provision_in(JobState.RUNNING)]
    form = confirmation_form(run_action(admin_client, "cancel_jobs", *jobs, confirmed=False))
    data: dict[str, list[str]] = {}
    for name, value in form:
        data.setdefault(name, []).append(value)
    response = admin_client.post(CHANGELIST, data)
    assert response.status_code == 302
    assert messages_of(response) == [
        (messages.SUCCESS, "2 jobs cancelled (1 running, asked to stop).")
    ]
    assert [state_of(job) for job in jobs] == [JobState.CANCELLED, JobState.RUNNING]


def test_a_bulk_action_on_one_job_does_not_ask(admin_client):
    job = failed_provision()
    response = run_action(admin_client, "requeue_jobs", job, confirmed=False)
    assert response.status_code == 302
    assert state_of(job) == JobState.PENDING


def test_confirming_select_all_acts_on_the_filtered_rows_it_counted(admin_client):
    failed = [failed_provision(), failed_provision()]
    cancelled = provision_in(JobState.CANCELLED)
    url = f"{CHANGELIST}?state__exact=failed"
    data = {"action": "requeue_jobs", "select_across": "1", "index": "0"}
    data["_selected_action"] = pks(failed[0])  # the page's boxes; select_across means all
    response = admin_client.post(url, data)
    assert "Requeue 2 selected instance provisions?" in response.content.decode()
    form = confirmation_form(response)
    assert ("select_across", "1") in form
    response = admin_client.post(url, {**data, "post": "yes"})
    assert messages_of(response) == [(messages.SUCCESS, "2 jobs requeued.")]
    assert [state_of(job) for job in (*failed, cancelled)] == [
        JobState.PENDING,
        JobState.PENDING,
        JobState.CANCELLED,
    ]
