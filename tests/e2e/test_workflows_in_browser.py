"""Workflows in the admin, in headless Chromium against a live server and a real worker.

An operator finds an address attachment cancelled because its provision failed, follows the
link to that provision, fixes the cause and requeues it from its page, and watches both run;
then opens a fleet's batch page. Screenshots of both pages go to the test's tmp_path.
"""

import pytest
from playwright.sync_api import expect

from jobs.models import Batch, JobState
from project.instances.models import Instance, InstanceProvision, IpAttachment
from project.instances.services import request_fleet
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def state_of(job) -> str:
    return type(job).objects.get(pk=job.pk).state


def test_a_cancelled_child_leads_to_its_parent_whose_requeue_runs_both(page, operator, tmp_path):
    instance = Instance.objects.create(name="Bad_Name!")
    provision = InstanceProvision.objects.create(instance=instance, max_attempts=1).enqueue()
    attachment = IpAttachment.objects.create(instance=instance).enqueue(after=[provision])
    with running_worker("--interval", "0.1"):
        wait_for(lambda: state_of(attachment) == JobState.CANCELLED)

        log_in(page, USERNAME, PASSWORD)
        page.goto(f"/admin/instances/ipattachment/{attachment.pk}/change/")
        workflow = page.locator(".job-workflow-line")
        expect(workflow).to_contain_text("waits on")
        expect(workflow).to_contain_text("failed")
        expect(page.locator("body")).to_contain_text(
            f"instances.InstanceProvision#{provision.pk} failed; this job waited for it"
        )
        page.screenshot(path=tmp_path / "cancelled-child.png", full_page=True)

        page.click(f".job-workflow-line a[href*='/instanceprovision/{provision.pk}/change/']")
        expect(page.locator(".job-workflow-line")).to_contain_text("waited on by")
        Instance.objects.filter(pk=instance.pk).update(name="web-fixed")
        page.click("button[value=requeue]")
        expect(page.locator(".messagelist")).to_contain_text("requeued")
        # Revived by its parent's requeue (waiting), then run by the worker once it succeeds.
        wait_for(lambda: state_of(attachment) == JobState.SUCCEEDED)
        page.goto(f"/admin/instances/ipattachment/{attachment.pk}/change/")
        expect(page.locator(".job-workflow-line")).to_contain_text("succeeded")
        assert Instance.objects.get(pk=instance.pk).state == Instance.State.READY


def test_a_fleets_batch_page_shows_it_finish_with_its_report(page, operator, tmp_path):
    report = request_fleet(["app-1", "app-2"])
    fleet = Batch.objects.finished_by(report)
    with running_worker("--interval", "0.1"):
        wait_for(lambda: state_of(report) == JobState.SUCCEEDED)
    log_in(page, USERNAME, PASSWORD)
    page.goto("/admin/jobs/batch/")
    page.click("text=fleet: app-1, app-2")
    body = page.locator("body")
    expect(body).to_contain_text("4 of 4 ended: 4 succeeded, 0 failed, 0 cancelled")
    expect(body).to_contain_text("finished")
    expect(body).to_contain_text(f"fleet report #{report.pk}")
    page.screenshot(path=tmp_path / "batch.png", full_page=True)
    page.click(f"a[href*='/fleetreport/{report.pk}/change/']")
    expect(page.locator(".job-workflow-line")).to_contain_text("runs when it finishes")
    expect(page.locator(".job-workflow-line")).to_contain_text(str(fleet))
