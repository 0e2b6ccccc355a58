"""The dashboard's "Memory growth per attempt, last hour": the ranking's figures in MB, its
links (the model's attempts largest first, the worst job), permissions and cost."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.models import JobState
from project.instances.models import InstanceProvision
from tests.admin.test_dashboard import DASHBOARD, staff, tables
from tests.admin.test_jobs import listed
from tests.conftest import NOON
from tests.factories import InstanceProvisionFactory, RecordingJobFactory, StepJobFactory
from tests.monitoring.test_dashboard import attempt

pytestmark = pytest.mark.django_db

PROVISIONS = "memory:instances.instanceprovision"
STEPS = "memory:testapp.stepjob"


def section(client) -> str:
    page = client.get(DASHBOARD).content.decode()
    if 'id="memory"' not in page:
        return ""
    assert page.index('id="jobs-live-dashboard"') < page.index('id="memory"')  # refreshed live
    start = page.index('<div class="module" id="memory">')
    return page[start : page.index("</div>", start)]


def memory_rows(client) -> dict:
    return {key: row for key, row in tables(client).rows.items() if key.startswith("memory:")}


def test_each_model_shows_its_attempts_median_and_worst_in_mb(admin_client, frozen):
    for growth in (0, 0, 100):
        attempt(InstanceProvisionFactory, growth)
    worst = attempt(InstanceProvisionFactory, 5000, state=JobState.FAILED)
    attempt(InstanceProvisionFactory, None)
    attempt(InstanceProvisionFactory, 90_000, at=NOON - timedelta(hours=2))
    for growth in (12_000, 12_595, 13_000):
        attempt(StepJobFactory, growth)
    row = memory_rows(admin_client)[PROVISIONS]
    assert row["model"]["text"] == "Instance provisions"
    assert row["attempts"]["text"] == "4"
    assert row["median"]["text"] == "+0.0 MB"  # 50 KiB
    assert row["worst"]["text"] == "+4.9 MB"  # 5000 KiB
    change = reverse("admin:instances_instanceprovision_change", args=[worst.pk])
    assert row["worst"]["href"] == change
    assert memory_rows(admin_client)[STEPS]["median"]["text"] == "+12.3 MB"  # 12,595 KiB


def test_the_model_with_the_highest_median_comes_first(admin_client, frozen):
    for growth in (0, 0, 0, 40_000):
        attempt(InstanceProvisionFactory, growth)
    for growth in (900, 1000, 1100):
        attempt(StepJobFactory, growth)
    assert list(memory_rows(admin_client)) == [STEPS, PROVISIONS]


def test_a_model_opens_its_hours_attempts_with_a_growth_the_largest_first(admin_client, frozen):
    small, large, middle = (attempt(InstanceProvisionFactory, kb) for kb in (10, 3000, 200))
    attempt(InstanceProvisionFactory, None)
    attempt(InstanceProvisionFactory, 90_000, at=NOON - timedelta(hours=2))
    href = memory_rows(admin_client)[PROVISIONS]["model"]["href"].replace("&amp;", "&")
    changelist = reverse("admin:instances_instanceprovision_changelist")
    assert href.startswith(f"{changelist}?state__in=succeeded%2Cfailed&finished_at__gte=")
    assert href.endswith("&memory_growth=largest")
    assert listed(admin_client.get(href)) == [large.pk, middle.pk, small.pk]


def test_a_model_without_an_admin_shows_its_figures_without_links(admin_client, frozen):
    attempt(RecordingJobFactory, 2048)
    row = memory_rows(admin_client)["memory:testapp.recordingjob"]
    assert row["model"] == {"text": "Recording jobs"}
    assert row["worst"] == {"text": "+2.0 MB"}


def test_staff_see_only_the_models_they_may_view(client, django_user_model, frozen):
    attempt(InstanceProvisionFactory, 100)
    attempt(StepJobFactory, 100)
    client.force_login(staff(django_user_model, "view_instanceprovision"))
    rows = memory_rows(client)
    assert list(rows) == [PROVISIONS]
    assert rows[PROVISIONS]["worst"]["href"].startswith("/admin/instances/instanceprovision/")
    client.force_login(staff(django_user_model, "view_worker"))
    assert section(client) == ""


def test_nothing_is_shown_without_a_growth_recorded_in_the_hour(admin_client, frozen):
    assert section(admin_client) == ""
    attempt(InstanceProvisionFactory, None)  # run outside a worker: nothing recorded
    attempt(StepJobFactory, 5000, at=NOON - timedelta(hours=2))
    attempt(StepJobFactory, 5000, state=JobState.PENDING)
    assert section(admin_client) == ""
    attempt(StepJobFactory, 0)
    assert "Memory growth per attempt, last hour" in section(admin_client)
    assert "leak suspect" in section(admin_client)


def test_the_page_costs_the_same_queries_however_many_attempts_finished(admin_client, frozen):
    def queries_asked() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(DASHBOARD).status_code == 200
        return len(queries)

    attempt(InstanceProvisionFactory, 100)
    attempt(StepJobFactory, 100)
    before = queries_asked()
    for growth in range(25):
        attempt(InstanceProvisionFactory, growth)
        attempt(StepJobFactory, growth)
    assert queries_asked() == before
    assert len(memory_rows(admin_client)) == 2
    assert InstanceProvision.objects.count() == 26
