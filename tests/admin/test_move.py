"""The "Move selected pending jobs…" action (`jobs.admin.moving`) through the test client:
a form page that keeps the selection, moves only pending and waiting jobs, logs each move,
refuses bad input and moves nothing then."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.urls import reverse

from jobs.models import JobState
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:testapp_stepjob_changelist")


def place(job) -> tuple:
    job.refresh_from_db()
    return (job.state, job.queue, job.priority, job.run_at)


def move(client, jobs, url=CHANGELIST, **extra):
    data = {"action": "move_jobs", "index": "0", "_selected_action": [j.pk for j in jobs]}
    return client.post(url, {**data, **extra})


def test_the_form_page_then_the_move_with_a_log_entry_per_job(admin_client):
    pending = [StepJob.objects.create(steps=1).enqueue(queue="small") for _ in range(2)]
    failed = StepJob.objects.create(steps=1).enqueue(queue="small")
    StepJob.objects.filter(pk=failed.pk).update(state=JobState.FAILED)
    before = {job.pk: place(job) for job in [*pending, failed]}

    page = move(admin_client, [*pending, failed])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Move 2 jobs" in text
    assert "1 selected job will stay as it is: only pending and waiting jobs" in text
    assert {job.pk: place(job) for job in [*pending, failed]} == before  # nothing yet

    done = move(admin_client, [*pending, failed], apply_move="yes", queue="big", priority="5")
    assert done.status_code == 302
    for job in pending:
        state, queue, priority, run_at = place(job)
        assert (state, queue, priority, run_at) == (JobState.PENDING, "big", 5, before[job.pk][3])
    assert place(failed) == before[failed.pk]
    messages = [m.message for m in done.wsgi_request._messages]
    assert messages == ["2 jobs moved. 1 skipped: only pending or waiting jobs can be moved."]
    entries = LogEntry.objects.filter(object_id__in=[str(j.pk) for j in pending])
    assert (
        sorted(e.change_message for e in entries)
        == ["Move: queue small, priority 0 → queue big, priority 5"] * 2
    )


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({}, "Say where to: a queue, a priority, or both."),
        ({"queue": "no spaces"}, "queue name &#x27;no spaces&#x27; is invalid"),
        ({"priority": "101"}, "Ensure this value is less than or equal to 100."),
        ({"priority": "high"}, "Enter a whole number."),
    ],
)
def test_bad_input_redraws_the_form_with_the_error_and_moves_nothing(admin_client, given, error):
    job = StepJob.objects.create(steps=1).enqueue(queue="small")
    before = place(job)
    page = move(admin_client, [job], apply_move="yes", **given)
    assert page.status_code == 200
    assert error in page.content.decode()
    assert place(job) == before
    assert not LogEntry.objects.exists()


def test_select_all_moves_every_pending_job_the_filters_show_and_no_other(admin_client):
    small = [StepJob.objects.create(steps=1).enqueue(queue="small") for _ in range(3)]
    other = StepJob.objects.create(steps=1).enqueue(queue="other")
    url = f"{CHANGELIST}?queue=small"
    page = move(admin_client, small[:1], url=url, select_across="1")
    assert "Move 3 jobs" in page.content.decode()
    form = r'<form method="post" action="([^"]+)" class="job-move-form"'
    form_action = re.search(form, page.content.decode())
    assert form_action[1].replace("&amp;", "&") == url
    move(admin_client, small[:1], url=url, select_across="1", apply_move="yes", queue="big")
    assert {place(job)[1] for job in small} == {"big"}
    assert place(other)[1] == "other"


def test_the_action_needs_the_change_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_stepjob"))
    client.force_login(viewer)
    job = StepJob.objects.create(steps=1).enqueue(queue="small")
    assert "move_jobs" not in client.get(CHANGELIST).content.decode()
    move(client, [job], apply_move="yes", queue="big")
    assert place(job)[1] == "small"
