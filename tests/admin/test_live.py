"""Live pages (`jobs/static/jobs/live.js`): the dashboard, a job's page and the workers page
carry the "Live" box and name the parts it refreshes; the dashboard starts live, the others
do not. The refresh itself is a browser's: tests/e2e/test_live_in_browser.py."""

import re

import pytest
from django.urls import reverse

from jobs.admin.display import LIVE_INTERVAL_SECONDS
from tests.factories import InstanceProvisionFactory

pytestmark = pytest.mark.django_db


def live_box(page: str) -> dict[str, str]:
    tag = re.search(r'<p class="job-live"([^>]*)>', page)
    assert tag is not None, "no Live box"
    return dict(re.findall(r'data-(live[\w-]*)="([^"]*)"', tag[1]))


def test_the_dashboard_starts_live_and_refreshes_its_content(admin_client):
    page = admin_client.get(reverse("admin:jobs_dashboard")).content.decode()
    assert live_box(page) == {
        "live": "dashboard",
        "live-default": "on",
        "live-interval": str(LIVE_INTERVAL_SECONDS),
        "live-regions": "#jobs-live-dashboard",
    }
    assert 'id="jobs-live-dashboard"' in page
    assert "/static/jobs/live.js" in page


def test_a_jobs_page_can_go_live_without_touching_its_form(admin_client):
    job = InstanceProvisionFactory(enqueue=True)
    url = reverse("admin:instances_instanceprovision_change", args=[job.pk])
    page = admin_client.get(url).content.decode()
    box = live_box(page)
    assert (box["live"], box["live-default"]) == ("job", "off")
    assert box["live-regions"] == "#job-operations, fieldset.job-live"
    live_sets = re.findall(r'<fieldset class="module aligned job-live', page)
    assert len(live_sets) == 4  # where it is, lifecycle, last error, activity; not the form
    assert 'id="job-operations"' in page


def test_the_workers_page_can_go_live(admin_client):
    page = admin_client.get(reverse("admin:jobs_worker_changelist")).content.decode()
    assert live_box(page)["live"] == "workers"
    assert live_box(page)["live-default"] == "off"
