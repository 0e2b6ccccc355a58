"""An operator's everyday moves in headless Chromium at 1280x900, against a live server and,
where a job must really run, a real `runjobs` process (stopped with SIGTERM afterwards).

Adding a job and enqueueing it from its page; telling a scheduled job from a pending one and
reading why a job failed in the list, with every column on the screen; requeueing failed jobs
only after a confirmation step; cancelling a running job and seeing it asked to stop.
"""

import time

import pytest
from playwright.sync_api import expect

from jobs.models import JobState
from project.instances.models import Instance, InstanceProvision
from tests.browser import log_in
from tests.conftest import wait_for
from tests.e2e.conftest import PASSWORD, USERNAME, running_worker
from tests.factories import InstanceProvisionFactory, StepJobFactory
from tests.testapp.models import StepJob

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SERVED_QUEUE = "average_slow"
UNSERVED_QUEUE = "provision_eu"  # no worker here: its jobs stay pending
PROVISIONS = "/admin/instances/instanceprovision/"
STATE = "#job-operations .job-state"


@pytest.fixture
def worker():
    """A real worker serving one queue, reporting its jobs in flight every second."""
    args = ("--queues", SERVED_QUEUE, "--interval", "0.1")
    with running_worker(*args, JOBS_LEASE_SECONDS="4") as process:
        yield process


def reload_until(page, selector: str, text: str, timeout: float = 30) -> None:
    """Reload until `selector` reads `text`: the admin draws a page once, it does not poll."""
    deadline = time.monotonic() + timeout
    while page.inner_text(selector) != text:
        assert time.monotonic() < deadline, f"{selector} still not {text!r} after {timeout} s"
        page.wait_for_timeout(200)
        page.reload()


def columns_fit(page) -> bool:
    """Whether the changelist's table shows every column without scrolling sideways."""
    return page.evaluate(
        """() => {
            const results = document.querySelector('#changelist-form .results');
            const last = document.querySelector('#result_list thead th:last-child');
            return results.scrollWidth <= results.clientWidth
                && last.getBoundingClientRect().right <= window.innerWidth;
        }"""
    )


def row(page, job):
    return page.locator("#result_list tbody tr", has=page.locator(f"input[value='{job.pk}']"))


def test_an_operator_adds_a_job_enqueues_it_and_stops_a_running_one(page, operator, worker):
    instance = Instance.objects.create(name="web-added")
    log_in(page, USERNAME, PASSWORD)

    # A job added in the admin is new, and its page offers to enqueue it.
    page.goto(f"{PROVISIONS}add/")
    page.fill("#id_instance", str(instance.pk))
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    job = InstanceProvision.objects.get(instance=instance)
    expect(page.locator(STATE)).to_have_text("New")
    page.click("button[value=enqueue]")
    expect(page.locator(".messagelist")).to_contain_text("1 job enqueued.")
    reload_until(page, STATE, "Succeeded")
    assert InstanceProvision.objects.get(pk=job.pk).state == JobState.SUCCEEDED

    # A running job, cancelled from its page, says it was asked to stop until it stops.
    # It stops at its next step, 8 s on: time enough to cancel it and see it asked to stop.
    step = StepJobFactory(steps=3, step_seconds=8, enqueue__queue=SERVED_QUEUE)
    wait_for(lambda: StepJob.objects.get(pk=step.pk).state == JobState.RUNNING)
    page.goto("/admin/jobs/worker/?status=alive")
    in_flight = "#result_list td.field-jobs_in_flight"
    reload_until(page, in_flight, f"StepJob#{step.pk}", timeout=5)
    expect(page.locator("#result_list td.field-heartbeat")).to_contain_text(" ago")
    assert columns_fit(page)
    page.click(f"{in_flight} a")
    expect(page.locator(STATE)).to_have_text("Running")
    page.click("button[value=cancel]")
    expect(page.locator(".messagelist")).to_contain_text("(1 running, asked to stop)")
    expect(page.locator(STATE)).to_have_text("Stop requested")
    assert page.locator("button[value=cancel]").count() == 0
    assert StepJob.objects.get(pk=step.pk).state == JobState.RUNNING
    reload_until(page, STATE, "Cancelled")


def test_an_operator_reads_the_list_and_requeues_failed_jobs_after_confirming(page, operator):
    failed = [
        InstanceProvisionFactory(instance__name=f"Bad_{n}!", max_attempts=1, enqueue=True).run()
        for n in range(2)
    ]
    pending = InstanceProvisionFactory(enqueue__queue=UNSERVED_QUEUE)
    scheduled = InstanceProvisionFactory(enqueue__delay=3600)
    log_in(page, USERNAME, PASSWORD)

    # Scheduled apart from pending, why each failed, and every column on a 1280 px screen.
    page.goto(PROVISIONS)
    assert columns_fit(page)
    expect(row(page, pending).locator(".job-state")).to_have_text("Pending")
    expect(row(page, scheduled).locator(".job-state")).to_have_text("Scheduled in 59m")
    error = row(page, failed[0]).locator("td.field-error_summary .job-error")
    expect(error).to_contain_text("ProviderError")
    expect(error).to_have_attribute(
        "title",
        "project.instances.provider.ProviderError: invalid server name 'Bad_0!': "
        "use lowercase letters, digits and hyphens",
    )
    expect(row(page, failed[0]).locator("td.field-instance")).to_have_text("Bad_0!")

    # Requeueing a selection of two asks first; "No" changes nothing.
    for job in failed:
        page.check(f"#result_list input[value='{job.pk}']")
    page.select_option("select[name=action]", "requeue_jobs")
    page.click("button[name=index]")
    expect(page.locator("h1")).to_have_text("Requeue 2 selected instance provisions?")
    page.click("text=No, take me back")
    expect(page.locator("#result_list")).to_be_visible()
    assert InstanceProvision.objects.filter(state=JobState.FAILED).count() == 2

    # "Requeue all failed" is a button that opens a confirmation; "Yes" requeues them.
    page.click("a.job-requeue-failed")
    expect(page.locator("h1")).to_have_text("Requeue all 2 failed instance provisions?")
    assert InstanceProvision.objects.filter(state=JobState.FAILED).count() == 2
    page.click("button.job-confirm-yes")
    expect(page.locator(".messagelist")).to_contain_text("2 jobs requeued.")
    states = InstanceProvision.objects.filter(pk__in=[job.pk for job in failed])
    assert set(states.values_list("state", flat=True)) == {JobState.PENDING}
