"""Who reads a job's status by default: whoever may see its model's rows in the admin (active
staff with the view or change permission), not every staff user; an error message may hold
what only the model's readers should see."""

import pytest
from django.contrib.auth.models import Permission

from jobs.views.status import status_url
from tests.factories import RecordingJobFactory

pytestmark = pytest.mark.django_db

SECRET = "card 4111 1111 1111 1111"


@pytest.fixture
def failed_job():
    """A job failed with an error message that names a card (`boom in card ...`)."""
    return RecordingJobFactory(enqueue=True, fail=True, label_text=SECRET).run()


def user_with(django_user_model, *codenames: str, is_staff: bool = True, is_active: bool = True):
    user = django_user_model.objects.create_user(
        "someone", password="pw", is_staff=is_staff, is_active=is_active
    )
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="testapp", codename=codename)
        )
    return user


def read_status(client, user, job):
    client.force_login(user)
    return client.get(status_url(job))


def test_a_staff_user_without_permission_on_the_model_cannot_read_its_jobs_status_or_error(
    client, django_user_model, failed_job
):
    response = read_status(client, user_with(django_user_model), failed_job)
    assert response.status_code == 404
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize("codename", ["view_recordingjob", "change_recordingjob"])
def test_a_staff_user_who_may_see_the_models_rows_reads_its_jobs_status_and_error(
    client, django_user_model, failed_job, codename
):
    response = read_status(client, user_with(django_user_model, codename), failed_job)
    assert response.status_code == 200
    assert response.json()["error"]["message"] == f"boom in {SECRET}"


def test_permission_on_another_job_model_is_not_enough(client, django_user_model, failed_job):
    user = user_with(django_user_model, "view_urgentjob", "view_stepjob")
    assert read_status(client, user, failed_job).status_code == 404


@pytest.mark.parametrize(
    "flags", [{"is_staff": False}, {"is_active": False}], ids=["not staff", "inactive"]
)
def test_the_view_permission_alone_is_not_enough_without_admin_access(
    client, django_user_model, failed_job, flags
):
    user = user_with(django_user_model, "view_recordingjob", **flags)
    client.force_login(user)
    assert client.get(status_url(failed_job)).status_code == 404


def test_a_superuser_reads_every_status(admin_client, failed_job):
    assert admin_client.get(status_url(failed_job)).status_code == 200
