"""Finding jobs in the admin: search by id, by the model's own fields and by error text;
filter by error type; the dashboard's "failed in the last hour, by error type" links."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.admin.jobs import JobAdmin
from jobs.monitoring import dashboard
from project.instances.models import Instance, InstanceProvision
from tests.admin.test_jobs import failed_provision, listed
from tests.testapp.models import StepJob

pytestmark = pytest.mark.django_db

PROVISIONS = reverse("admin:instances_instanceprovision_changelist")
STEPS = reverse("admin:testapp_stepjob_changelist")
DASHBOARD = reverse("admin:jobs_dashboard")


def found(client, url: str, **query) -> list[int]:
    return sorted(listed(client.get(url, query)))


def test_search_finds_a_job_by_id_by_its_fields_and_by_its_error_text(admin_client, frozen):
    broken = failed_provision()  # the provider refused its name
    web = InstanceProvision.objects.create(instance=Instance.objects.create(name="web-9"))
    assert found(admin_client, PROVISIONS, q=str(web.pk)) == [web.pk]
    assert found(admin_client, PROVISIONS, q="web-9") == [web.pk]  # the subclass's instance__name
    assert found(admin_client, PROVISIONS, q="invalid server name") == [broken.pk]
    assert found(admin_client, PROVISIONS, q="ProviderError") == [broken.pk]
    assert found(admin_client, PROVISIONS, q="nothing like it") == []


def test_the_models_own_text_fields_are_searched_and_its_secrets_are_not(admin_client):
    job = StepJob.objects.create(steps=2, api_token="tok-hidden")
    fields = JobAdmin(StepJob, None).get_search_fields(None)
    assert "api_token" not in fields
    assert found(admin_client, STEPS, q="tok-hidden") == []
    assert found(admin_client, STEPS, q=str(job.pk)) == [job.pk]


def test_the_error_type_filter_offers_recent_types_and_narrows_the_list(admin_client, frozen):
    broken = failed_provision()
    InstanceProvision.objects.create(instance=Instance.objects.create(name="ok")).enqueue()
    page = admin_client.get(PROVISIONS).content.decode()
    assert "By error type" in page
    assert "project.instances.provider.ProviderError" in page
    query = {"error_type": "project.instances.provider.ProviderError"}
    assert found(admin_client, PROVISIONS, **query) == [broken.pk]


def test_the_dashboard_breaks_the_hours_failures_down_by_type_with_links(admin_client, frozen):
    failures = [failed_provision() for _ in range(2)]
    page = admin_client.get(DASHBOARD).content.decode()
    assert "Failed in the last hour, by error type" in page
    rows = dashboard.failures_by_type([InstanceProvision], frozen.now)
    assert rows == [(InstanceProvision, "project.instances.provider.ProviderError", 2)]
    link = page.split('id="failures"')[1].split('href="')[1].split('"')[0].replace("&amp;", "&")
    assert "error_type=project.instances.provider.ProviderError" in link
    assert found(admin_client, link) == sorted(job.pk for job in failures)


def test_a_good_hour_has_no_breakdown_and_asks_no_more(admin_client, frozen):
    InstanceProvision.objects.create(instance=Instance.objects.create(name="ok")).enqueue()
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(DASHBOARD).content.decode()
    assert 'id="failures"' not in page
    grouped_by_type = [q for q in queries if "GROUP BY" in q["sql"] and "error_type" in q["sql"]]
    assert grouped_by_type == []
