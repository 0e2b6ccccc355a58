"""Finding jobs in the admin, in headless Chromium against a live server: from the
dashboard's "failed in the last hour, by error type" to the jobs it counts, then the search
box by an instance's name and by error text."""

import pytest
from playwright.sync_api import expect

from project.instances.models import Instance, InstanceProvision
from tests.admin.test_jobs import failed_provision
from tests.browser import log_in
from tests.e2e.conftest import PASSWORD, USERNAME

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def shown_ids(page) -> set[int]:
    return {int(text) for text in page.locator("#result_list tbody th a").all_inner_texts()}


def test_an_operator_goes_from_a_failing_error_type_to_its_jobs_and_searches(
    page, operator, tmp_path
):
    refused = [failed_provision(f"Bad_Name_{n}!") for n in range(2)]
    fine = InstanceProvision.objects.create(instance=Instance.objects.create(name="web-3"))
    fine.enqueue()
    log_in(page, USERNAME, PASSWORD)
    page.click("text=Jobs dashboard")
    failures = page.locator("#failures")
    expect(failures).to_contain_text("project.instances.provider.ProviderError")
    expect(failures.locator("td.number")).to_have_text("2")
    page.screenshot(path=tmp_path / "failures.png", full_page=True)
    failures.locator("a").click()
    expect(page.locator("#changelist-filter")).to_contain_text("By error type")
    assert shown_ids(page) == {job.pk for job in refused}

    page.goto("/admin/instances/instanceprovision/")
    search(page, "web-3")
    assert shown_ids(page) == {fine.pk}
    search(page, "invalid server name")
    assert shown_ids(page) == {job.pk for job in refused}


def search(page, text: str) -> None:
    page.fill("#searchbar", text)
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
