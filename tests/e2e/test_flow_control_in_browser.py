"""A job model's "Flow control" panel in headless Chromium: the operator reads who holds the
slots of a concurrency-limited model, follows a slot to its job, and sees a pause; the panel is
photographed (in pytest's tmp_path) to look at after changing it."""

from unittest import mock

import pytest
from playwright.sync_api import expect

from jobs import timesource
from jobs.db import engine_for
from jobs.models import QueuePause
from tests.browser import log_in
from tests.e2e.conftest import PASSWORD, USERNAME
from tests.testapp.models import LimitedJob, RatedJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/testapp/limitedjob/"


def test_an_operator_reads_who_holds_the_slots_and_follows_one_to_its_job(page, operator, tmp_path):
    for account in ("acme", "acme", "acme", "globex", "initech", "initech"):
        LimitedJob.objects.create(account=account).enqueue()
    engine_for("default").claim(LimitedJob, queue=None, worker="w1", now=timesource.now(), limit=10)
    QueuePause.objects.pause(
        "default", model="testapp.LimitedJob", reason="provider outage", paused_by="alice"
    )
    acme = LimitedJob.objects.filter(account="acme", concurrency_slot=1).get()

    log_in(page, USERNAME, PASSWORD)
    page.goto(CHANGELIST)
    panel = page.locator("#flow-control")
    expect(panel.locator(".flow-limits")).to_have_text("at most 2 running per account")
    keys = panel.locator(".flow-holders .flow-key")
    assert keys.evaluate_all("rows => rows.map(row => row.dataset.key)") == [
        "acme",
        "initech",
        "globex",
    ]
    expect(keys.nth(0).locator(".flow-count")).to_have_text("2 of 2")
    expect(keys.nth(2).locator(".flow-count")).to_have_text("1 of 2")
    expect(panel.locator(".flow-pause")).to_contain_text("provider outage")
    expect(panel.locator(".flow-pause")).to_contain_text("by alice since")
    assert panel.bounding_box()["width"] <= 1280
    panel.screenshot(path=str(tmp_path / "flow-control.png"))
    page.screenshot(path=str(tmp_path / "changelist.png"))

    # From a slot to the job holding it, whose page says which slot of which key.
    keys.nth(0).locator(f"a[href$='/{acme.pk}/change/']").click()
    expect(page.locator(".field-flow_control_display .readonly")).to_have_text(
        "account = acme, running in slot 1 (slots 0 to 1); at most 2 running per account"
    )

    # From the key to the changelist of its running jobs.
    page.goto(CHANGELIST)
    page.locator("#flow-control .flow-holders .flow-key-name", has_text="acme").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)


def test_an_operator_reads_the_starts_of_each_key_in_the_rate_s_period(page, operator, tmp_path):
    for account in ("acme", "acme", "acme", "globex"):
        RatedJob.objects.create(account=account).enqueue()
    started = timesource.now()
    engine_for("default").claim(RatedJob, queue=None, worker="w1", now=started, limit=10)

    log_in(page, USERNAME, PASSWORD)
    # The period is a second: the page is drawn as if within it, however slow the browser.
    with mock.patch.object(timesource, "now", return_value=started):
        page.goto("/admin/testapp/ratedjob/")
    panel = page.locator("#flow-control")
    expect(panel.locator(".flow-limits")).to_have_text("5 starts per second per account")
    expect(panel.locator(".flow-starts")).to_have_text("acme: 3 of 5 · globex: 1 of 5")
    panel.screenshot(path=str(tmp_path / "flow-control-rate.png"))
