"""The job lists' memory growth filter: the jobs with a growth on record, the largest first."""

import pytest
from django.urls import reverse

from tests.admin.test_jobs import column_index, listed
from tests.factories import InstanceProvisionFactory
from tests.monitoring.test_dashboard import attempt

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:instances_instanceprovision_changelist")


def test_it_lists_only_jobs_with_a_growth_the_largest_first(admin_client, frozen):
    small, large, none, middle = (
        attempt(InstanceProvisionFactory, kb) for kb in (10, 3000, None, 200)
    )
    assert listed(admin_client.get(CHANGELIST)) == [middle.pk, none.pk, large.pk, small.pk]
    found = admin_client.get(CHANGELIST, {"memory_growth": "largest"})
    assert listed(found) == [large.pk, middle.pk, small.pk]
    assert "recorded, largest first" in found.content.decode()


def test_a_column_clicked_sorts_first_and_the_growth_breaks_its_ties(admin_client, frozen):
    small, large = attempt(InstanceProvisionFactory, 10), attempt(InstanceProvisionFactory, 3000)
    failed = attempt(InstanceProvisionFactory, 1, state="failed")
    by_state = {"memory_growth": "largest", "o": str(column_index(admin_client, "state_badge"))}
    assert listed(admin_client.get(CHANGELIST, by_state)) == [failed.pk, large.pk, small.pk]
