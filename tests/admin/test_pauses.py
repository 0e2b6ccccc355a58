"""The queue pauses in the admin: adding one pauses (who and when recorded, the admin log
too), deleting it resumes, bad input is refused with the form's errors; and the dashboard
shows a paused queue as paused, with its reason, rather than over its SLA."""

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.urls import reverse

from jobs.models import QueuePause
from tests.admin.test_dashboard import DASHBOARD
from tests.conftest import NOON
from tests.factories import UrgentJobFactory

pytestmark = pytest.mark.django_db

ADD = reverse("admin:jobs_queuepause_add")
CHANGELIST = reverse("admin:jobs_queuepause_changelist")


def add(client, **data):
    return client.post(ADD, {"queue": "", "model": "", "reason": "", **data})


def test_adding_a_pause_records_who_and_when_and_the_admin_log(admin_client, admin_user):
    response = add(admin_client, queue="default", reason="deploy")
    assert response.status_code == 302, response.content
    pause = QueuePause.objects.get()
    assert (pause.queue, pause.model, pause.reason) == ("default", "", "deploy")
    assert pause.paused_by == admin_user.get_username()
    entry = LogEntry.objects.get(action_flag=ADDITION)
    assert (entry.object_id, entry.user) == (str(pause.pk), admin_user)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "deploy" in page
    assert "every job model" in page


def test_a_model_is_chosen_among_the_job_models(admin_client):
    assert add(admin_client, queue="urgent", model="testapp.UrgentJob").status_code == 302
    response = add(admin_client, queue="urgent", model="testapp.Nope")
    assert response.status_code == 200
    assert "Select a valid choice" in " ".join(response.context["adminform"].form.errors["model"])
    assert list(QueuePause.objects.values_list("model", flat=True)) == ["testapp.UrgentJob"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"queue": "no queue"}, "queue", "queue name 'no queue' is invalid"),
        ({"queue": ""}, "queue", "This field is required"),
        ({"queue": "default", "reason": "x" * 501}, "reason", "at most 500 characters"),
    ],
)
def test_bad_input_is_refused_with_the_form_s_error(admin_client, data, field, message):
    response = add(admin_client, **data)
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert not QueuePause.objects.exists()


def test_pausing_a_paused_queue_twice_is_refused(admin_client):
    add(admin_client, queue="default")
    response = add(admin_client, queue="default", reason="again")
    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors)
    assert QueuePause.objects.count() == 1


def test_a_pause_s_reason_can_change_but_not_its_queue(admin_client):
    pause, _ = QueuePause.objects.pause("default", reason="first")
    url = reverse("admin:jobs_queuepause_change", args=[pause.pk])
    response = admin_client.post(url, {"queue": "other", "model": "", "reason": "second"})
    assert response.status_code == 302
    pause.refresh_from_db()
    assert (pause.queue, pause.reason) == ("default", "second")


def test_deleting_a_pause_resumes_the_queue_and_is_logged(admin_client):
    pause, _ = QueuePause.objects.pause("default")
    url = reverse("admin:jobs_queuepause_delete", args=[pause.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not QueuePause.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION, object_id=str(pause.pk)).exists()


def test_the_dashboard_shows_a_paused_queue_as_paused_with_its_reason(
    admin_client, settings, frozen
):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s"}}
    UrgentJobFactory.create_batch(2, enqueue=True, enqueue__run_at=NOON)
    frozen.now = NOON.replace(minute=5)
    page = admin_client.get(DASHBOARD).content.decode()
    assert "over SLA" in page
    QueuePause.objects.pause("urgent", reason="partner outage", paused_by="ops")
    page = admin_client.get(DASHBOARD).content.decode()
    row = page[page.index('data-row="urgent"', page.index('id="service-levels"')) :]
    row = row[: row.index("</tr>")]
    assert "over SLA" not in row
    assert ">paused</strong>: partner outage" in row
    assert "paused by ops" in row
