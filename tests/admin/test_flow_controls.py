"""The "Flow control" panel of a job model's changelist (`jobs.admin.flow`) through the test
client: what the model declares, who holds its slots, its starts, its pauses, at a bounded
number of queries; and a limited job's key and slot on its own page."""

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import timesource
from jobs.admin.flow import TOP_KEYS, slot_holders
from jobs.db import engine_for
from jobs.db.limits import Limits
from jobs.models import QueuePause
from tests.testapp.models import LimitedJob, RatedJob, StepJob, UniqueJob

pytestmark = pytest.mark.django_db


def changelist(model) -> str:
    return reverse(f"admin:testapp_{model._meta.model_name}_changelist")


def change_url(job) -> str:
    return reverse(f"admin:testapp_{job._meta.model_name}_change", args=[job.pk])


def running(model, *accounts) -> list:
    """Rows of `accounts` enqueued, then claimed as a worker claims them (slots and all)."""
    for account in accounts:
        model.objects.create(account=account).enqueue()
    return engine_for("default").claim(
        model, queue=None, worker="w1", now=timesource.now(), limit=len(accounts)
    )


def panel(response) -> str:
    """The panel's HTML, or "" when the page has none."""
    match = re.search(r'<section class="job-flow".*?</section>', response.content.decode(), re.S)
    return match.group(0) if match else ""


def holders(response) -> list:
    """(key, held, [(job id, slot), ...]) per key the panel names, as its context has them."""
    return [
        (load.value, load.count, [(held.pk, held.slot) for held in load.slots])
        for load in response.context["flow_control"].holders.keys
    ]


def test_the_panel_names_the_limit_and_the_jobs_holding_each_key_s_slots(admin_client):
    claimed = running(LimitedJob, "acme", "acme", "acme", "zeta", None)
    slots = {job.pk: (job.account, job.concurrency_slot) for job in claimed}
    acme = sorted(pk for pk, (account, _) in slots.items() if account == "acme")
    (zeta,) = [pk for pk, (account, _) in slots.items() if account == "zeta"]

    response = admin_client.get(changelist(LimitedJob))

    assert holders(response) == [
        ("acme", 2, [(acme[0], 0), (acme[1], 1)]),
        ("zeta", 1, [(zeta, 0)]),
    ]
    assert response.context["flow_control"].holders.more == 0
    html = panel(response)
    assert "at most 2 running per account" in html
    acme_line = re.search(r'data-key="acme">(.*?)</div>', html, re.S).group(1)
    assert '<span class="flow-count">2 of 2</span>' in acme_line
    for pk in acme:
        assert f'href="{change_url(LimitedJob(pk=pk))}"' in acme_line
    assert f"{changelist(LimitedJob)}?state__exact=running&amp;account=acme" in acme_line
    assert "Unique on" not in html  # LimitedJob declares no unique_on
    assert "Starts in the last" not in html  # ... nor a rate


def test_the_panel_names_the_busiest_keys_and_counts_the_rest(admin_client):
    accounts = [f"k{n:02}" for n in range(TOP_KEYS + 3)]
    running(LimitedJob, "k05", *accounts)  # k05 runs two: the busiest

    response = admin_client.get(changelist(LimitedJob))

    shown = [(key, held) for key, held, _ in holders(response)]
    assert shown == [("k05", 2), *[(key, 1) for key in accounts if key != "k05"][: TOP_KEYS - 1]]
    assert response.context["flow_control"].holders.more == 3
    assert "and 3 more account values with jobs running" in panel(response)


def changelist_queries(admin_client, model) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(changelist(model)).status_code == 200
    return len(queries)


def test_the_panel_s_queries_do_not_grow_with_the_number_of_keys(admin_client):
    running(LimitedJob, "one")
    running(RatedJob, "one")
    few = changelist_queries(admin_client, LimitedJob), changelist_queries(admin_client, RatedJob)

    many = [f"k{n:02}" for n in range(3 * TOP_KEYS)]
    running(LimitedJob, *many, *many)
    running(RatedJob, *many)

    assert (
        changelist_queries(admin_client, LimitedJob),
        changelist_queries(admin_client, RatedJob),
    ) == few
    # A model without controls pays one query for the panel (are any of its queues paused?).
    plain = changelist_queries(admin_client, StepJob)
    assert few == (plain + 2, plain + 1)  # + top slot holders and their rows; + top starts


def test_the_starts_in_the_rate_s_period_are_counted_per_key_by_database_time(admin_client):
    counted = running(RatedJob, "acme", "acme", "acme", "zeta")
    (earlier,) = running(RatedJob, "acme")
    now = timesource.now()
    RatedJob.objects.filter(pk__in=[job.pk for job in counted]).update(
        started_at=now - timedelta(seconds=0.5)
    )
    # Started exactly one period ago: out of the window, as the claim counts it.
    RatedJob.objects.filter(pk=earlier.pk).update(started_at=now - timedelta(seconds=1))

    with mock.patch.object(timesource, "now", return_value=now):
        response = admin_client.get(changelist(RatedJob))

    starts = response.context["flow_control"].starts
    assert [(load.value, load.count) for load in starts.keys] == [("acme", 3), ("zeta", 1)]
    html = panel(response)
    assert "5 starts per second per account" in html
    assert "Starts in the last 1s" in html
    assert re.search(r'data-key="acme">.*?<span class="flow-count">3 of 5</span>', html, re.S)
    assert "Slots held" not in html  # RatedJob has no concurrency limit


def test_unique_on_alone_shows_the_panel_with_the_unique_fields(admin_client):
    html = panel(admin_client.get(changelist(UniqueJob)))
    fields = ", ".join(UniqueJob.unique_on)
    assert f'<dd class="flow-unique">{fields} ' in html
    assert "Limits" not in html


def test_a_model_without_controls_or_pauses_has_no_panel(admin_client):
    response = admin_client.get(changelist(StepJob))
    assert response.context["flow_control"] is None
    assert 'id="flow-control"' not in response.content.decode()


def test_the_pauses_that_hold_the_model_s_rows_are_listed_with_who_and_since_when(admin_client):
    default_queue = LimitedJob._meta.get_field("queue").get_default()
    QueuePause.objects.pause(
        "elsewhere", model="testapp.LimitedJob", reason="deploy", paused_by="ops"
    )
    QueuePause.objects.pause(default_queue, reason="incident 42", paused_by="alice")
    QueuePause.objects.pause("unused", reason="not this model's queue", paused_by="bob")
    QueuePause.objects.pause("elsewhere", model="testapp.RatedJob", reason="other model")

    html = panel(admin_client.get(changelist(LimitedJob)))

    assert re.findall(r'data-queue="([^"]+)"', html) == [default_queue, "elsewhere"]
    assert "(every model): incident 42" in html
    assert "(this model): deploy" in html
    assert "by alice since " in html
    assert "by ops since " in html
    assert "not this model" not in html
    assert "other model" not in html
    assert f'href="{reverse("admin:jobs_queuepause_changelist")}"' in html


def test_a_user_who_may_not_see_the_pauses_gets_no_link_to_them(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_limitedjob"))
    client.force_login(user)
    QueuePause.objects.pause("elsewhere", model="testapp.LimitedJob", reason="deploy")

    html = panel(client.get(changelist(LimitedJob)))

    assert "(this model): deploy" in html
    assert "Pauses…" not in html


def test_a_whole_queue_pause_shows_the_panel_of_a_model_with_pending_rows_there(admin_client):
    StepJob.objects.create().enqueue(queue="batch")
    QueuePause.objects.pause("batch", reason="maintenance", paused_by="carol")

    response = admin_client.get(changelist(StepJob))

    assert response.context["flow_control"].pauses == list(QueuePause.objects.all())
    assert "maintenance" in panel(response)


def test_a_running_limited_job_s_page_shows_its_key_and_slot(admin_client):
    _, second = running(LimitedJob, "acme", "acme")
    waiting = LimitedJob.objects.create(account="acme").enqueue()
    unkeyed = LimitedJob.objects.create(account=None).enqueue()

    def line(job) -> str:
        page = admin_client.get(change_url(job)).content.decode()
        return re.search(
            r"field-flow_control_display.*?<div class=\"readonly\">(.*?)</div>", page, re.S
        ).group(1)

    assert line(second) == (
        "account = acme, running in slot 1 (slots 0 to 1); at most 2 running per account"
    )
    assert line(waiting) == "account = acme; at most 2 running per account"
    assert line(unkeyed) == "account is empty: the limits do not apply to this job"
    step = admin_client.get(change_url(StepJob.objects.create())).content.decode()
    assert "field-flow_control_display" not in step


def test_a_model_without_a_concurrency_key_is_one_key_holding_its_slots_in_order():
    claimed = running(LimitedJob, "acme", "zeta")
    whole_model = Limits(key=None, concurrency=2, rate=None)

    busiest = slot_holders(LimitedJob.objects.all(), whole_model, str, "/list/")

    (load,) = busiest.keys
    assert (load.label, load.count, load.url, busiest.more) == (
        "whole model",
        2,
        "/list/?state__exact=running",
        0,
    )
    by_slot = sorted(claimed, key=lambda job: job.concurrency_slot)
    assert [(held.pk, held.slot, held.url) for held in load.slots] == [
        (job.pk, job.concurrency_slot, str(job.pk)) for job in by_slot
    ]
