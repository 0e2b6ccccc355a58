"""Workflows in the admin (`jobs.admin.workflows`), through the test client: a job's parents
and children with their states, its batch, and a batch's own page, at a bounded number of
queries; read-only. The example project's two provisioning jobs are the dependent pair."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import batch
from jobs.admin.workflows import SHOWN
from jobs.models import Batch
from jobs.testing import drain
from project.instances.models import Instance, InstanceProvision, IpAttachment
from tests.testapp.models import BatchReport, StepJob, UrgentJob

pytestmark = pytest.mark.django_db


def change_url(job) -> str:
    meta = job._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[job.pk])


def test_a_job_page_shows_what_it_waits_on_and_what_waits_on_it_with_states(admin_client):
    instance = Instance.objects.create(name="web-1")
    provision = InstanceProvision.objects.create(instance=instance).enqueue()
    other = UrgentJob.objects.create(note="u").enqueue()
    attachment = IpAttachment.objects.create(instance=instance).enqueue(after=[provision, other])
    follow_up = StepJob.objects.create(steps=1).enqueue(after=[attachment])
    other.run()

    page = admin_client.get(change_url(attachment)).content.decode()
    assert "Workflow" in page
    assert "waits on" in page
    assert "waited on by" in page
    assert change_url(provision) in page
    assert change_url(follow_up) in page
    assert f"urgent job #{other.pk}" in page  # its model is not in the admin: named, not linked
    assert ">succeeded<" in page
    assert ">pending<" in page
    assert ">waiting<" in page

    parent_page = admin_client.get(change_url(provision)).content.decode()
    assert "waited on by" in parent_page
    assert change_url(attachment) in parent_page


def test_a_job_with_no_workflow_has_no_such_section(admin_client):
    plain = StepJob.objects.create(steps=1).enqueue()
    assert "Workflow" not in admin_client.get(change_url(plain)).content.decode()


def test_a_batch_page_shows_progress_members_by_state_and_its_callback(admin_client):
    with batch(on_finish=BatchReport(), description="nightly import") as imports:
        for _ in range(SHOWN + 5):
            StepJob.objects.create(steps=1).enqueue()
    first = imports.members()[0]
    StepJob.objects.get(pk=first.pk).cancel()
    url = reverse("admin:jobs_batch_change", args=[imports.pk])
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url).content.decode()
    assert "nightly import" in page
    assert f"1 of {SHOWN + 5} ended: 0 succeeded, 0 failed, 1 cancelled" in page
    assert ">pending<" in page
    assert ">cancelled<" in page
    assert f"(first {SHOWN} of {SHOWN + 5})" in page
    assert f"batch report #{imports.on_finish().pk}" in page
    assert "test_workflows.py" in page  # the line of code that opened it
    assert len(queries) <= 15, [q["sql"] for q in queries]

    member_page = admin_client.get(change_url(first)).content.decode()
    assert "member of" in member_page
    assert url in member_page

    drain()
    listing = admin_client.get(reverse("admin:jobs_batch_changelist")).content.decode()
    assert "nightly import" in listing
    assert ">finished<" in listing


def test_batches_cannot_be_added_or_edited_from_the_admin(admin_client):
    with batch() as opened:
        pass
    assert admin_client.get(reverse("admin:jobs_batch_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:jobs_batch_change", args=[opened.pk]), {"description": "renamed"}
    )
    assert response.status_code == 403
    assert Batch.objects.get().description == ""


def test_a_running_batch_cannot_be_deleted_and_a_finished_one_can(admin_client):
    with batch(on_finish=BatchReport()) as running:
        StepJob.objects.create(steps=1).enqueue()
    delete = reverse("admin:jobs_batch_delete", args=[running.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Batch.objects.filter(pk=running.pk).exists()
    drain()
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not Batch.objects.filter(pk=running.pk).exists()
