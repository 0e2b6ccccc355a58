"""The InstanceProvision admin (a `JobAdmin`) through the test client, as a browser drives it."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import messages
from django.contrib.admin import site
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from jobs import timesource
from jobs.models import JobState, Worker
from project.instances.models import InstanceProvision
from tests.conftest import NOON
from tests.factories import InstanceProvisionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:instances_instanceprovision_changelist")
BADGE = re.compile(r'<span class="job-state" style="[^"]*background:(#[0-9a-f]{6})[^"]*">(\w+)<')


# Helpers: users, jobs in a given state, and reading the admin's answers.


def staff_user(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user(
        username=f"staff-{'-'.join(codenames) or 'none'}", password="x", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="instances", codename__in=codenames)
    )
    return user


def change_url(job) -> str:
    return reverse("admin:instances_instanceprovision_change", args=[job.pk])


def failed_provision(name: str = "Bad_Name!") -> InstanceProvision:
    """A provision that really failed: the provider refuses the name, and one attempt is all."""
    job = InstanceProvisionFactory(instance__name=name, max_attempts=1, enqueue=True).run()
    assert job.state == JobState.FAILED
    return job


def provision_in(state: str, **fields) -> InstanceProvision:
    """A provision brought to `state` the way the framework gets it there."""
    if state == JobState.NEW:
        return InstanceProvisionFactory(**fields)
    if state == JobState.FAILED:
        return failed_provision()
    job = InstanceProvisionFactory(enqueue=True, **fields)
    if state == JobState.SUCCEEDED:
        job.run()
    elif state == JobState.CANCELLED:
        job.cancel()
    elif state == JobState.RUNNING:
        # As a worker leaves the row while perform() is under way in another process.
        InstanceProvision.objects.filter(pk=job.pk).update(
            state=JobState.RUNNING,
            started_at=timesource.now(),
            attempts=1,
            claimed_by="elsewhere:1",
        )
    assert state_of(job) == state
    return job


def state_of(job) -> str:
    return InstanceProvision.objects.values_list("state", flat=True).get(pk=job.pk)


def listed(response) -> list[int]:
    """The primary keys the changelist shows, in its order."""
    assert response.status_code == 200
    return [job.pk for job in response.context["cl"].result_list]


def pks(*jobs) -> list[int]:
    return [job.pk for job in jobs]


def messages_of(response) -> list[tuple[int, str]]:
    return [(message.level, message.message) for message in get_messages(response.wsgi_request)]


def run_action(client, action: str, *jobs, view: str = "", confirmed: bool = True):
    """Select `jobs` on the changelist (as filtered by the querystring `view`), run `action`;
    `confirmed` posts as its confirmation page does (`post=yes`), as if "Yes" was clicked."""
    url = f"{CHANGELIST}?{view}" if view else CHANGELIST
    data = {"action": action, "_selected_action": pks(*jobs), "index": "0"}
    return client.post(url, {**data, "post": "yes"} if confirmed else data)


def timed_provision(wait: timedelta, run: timedelta) -> InstanceProvision:
    """A finished provision that queued for `wait` and ran for `run`."""
    job = provision_in(JobState.SUCCEEDED)
    requested = NOON - timedelta(days=1)
    InstanceProvision.objects.filter(pk=job.pk).update(
        requested_at=requested,
        run_at=requested,
        started_at=requested + wait,
        finished_at=requested + wait + run,
    )
    return job


def row_of(page: str, job) -> str:
    """The changelist row of `job`, as HTML."""
    start = page.index(f'value="{job.pk}"')
    return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]


def cell(row: str, column: str) -> str:
    """The inside of the cell of changelist column `column` in `row`."""
    start = row.index(f'class="field-{column}"')
    return row[row.index(">", start) + 1 : row.index("</td>", start)]


def column_index(client, name: str) -> int:
    """What `?o=` numbers a column by: its place among the changelist's columns."""
    return list(client.get(CHANGELIST).context["cl"].list_display).index(name)


def change_form_data(job, **overrides) -> dict:
    """What the change form posts back for `job` as it is now, with `overrides` applied."""
    data = {
        "instance": job.instance_id,
        "queue": job.queue,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "_save": "Save",
    }
    return {**data, **overrides}


@pytest.fixture
def viewer(client, django_user_model):
    """A client logged in as staff with only the view permission on provisions."""
    client.force_login(staff_user(django_user_model, "view_instanceprovision"))
    return client


# Changelist


def test_changelist_renders_for_staff_with_only_the_view_permission(viewer):
    job = provision_in(JobState.PENDING)
    response = viewer.get(CHANGELIST)
    assert listed(response) == [job.pk]
    assert job.instance.name in response.content.decode()


def test_changelist_shows_a_coloured_badge_per_state(admin_client):
    provision_in(JobState.PENDING)
    provision_in(JobState.SUCCEEDED)
    failed_provision()
    badges = BADGE.findall(admin_client.get(CHANGELIST).content.decode())
    assert sorted(badges) == [
        ("#0d6efd", "Pending"),
        ("#198754", "Succeeded"),
        ("#dc3545", "Failed"),
    ]


def test_a_pending_job_due_later_is_shown_scheduled_with_when_it_is_due(admin_client, frozen):
    later = InstanceProvisionFactory(enqueue__delay=timedelta(minutes=59))
    due = provision_in(JobState.PENDING)
    page = admin_client.get(CHANGELIST).content.decode()
    assert cell(row_of(page, later), "state_badge") == (
        '<span class="job-state two-lines" style="color:#fff;background:#6f42c1;padding:1px '
        '6px;border-radius:8px;white-space:nowrap" title="Pending, not to start before '
        '2026-11-22 12:59:00 UTC.">Scheduled<br> in 59m</span>'
    )
    assert ">Pending</span>" in cell(row_of(page, due), "state_badge")
    assert state_of(later) == JobState.PENDING  # what the database says is unchanged


def test_a_job_page_says_when_a_scheduled_job_is_due(admin_client, frozen):
    job = InstanceProvisionFactory(enqueue__delay=timedelta(hours=2, minutes=5))
    page = admin_client.get(change_url(job)).content.decode()
    assert ">Scheduled · in 2h5m</span>" in page
    assert "Pending, not to start before 2026-11-22 14:05:00 UTC." in page


def test_a_running_job_asked_to_stop_is_shown_stop_requested(admin_client):
    job = provision_in(JobState.RUNNING)
    job.cancel()
    listing = admin_client.get(CHANGELIST).content.decode()
    assert ">Stop<br> requested</span>" in cell(row_of(listing, job), "state_badge")
    page = admin_client.get(change_url(job)).content.decode()
    assert ">Stop requested</span>" in page
    assert ">Running</span>" not in page
    assert "It stops when it next checks for a cancel request, or when it finishes." in page
    assert state_of(job) == JobState.RUNNING


def test_changelist_shows_the_error_type_and_the_start_of_its_message(admin_client):
    job = failed_provision("Bad_Name!")
    error = cell(row_of(admin_client.get(CHANGELIST).content.decode(), job), "error_summary")
    full = (
        "project.instances.provider.ProviderError: invalid server name &#x27;Bad_Name!&#x27;: "
        "use lowercase letters, digits and hyphens"
    )
    assert error == (
        f'<span class="job-error" title="{full}"><strong>ProviderError</strong>'
        "<span>invalid server name &#x27;Bad_Name!&#x27;: use lo…</span></span>"
    )


def test_the_error_column_leaves_out_an_earlier_attempts_error_once_the_job_succeeded(
    admin_client,
):
    job = provision_in(JobState.SUCCEEDED)
    InstanceProvision.objects.filter(pk=job.pk).update(
        error_type="builtins.TimeoutError", error_message="attempt 1 timed out"
    )
    assert cell(row_of(admin_client.get(CHANGELIST).content.decode(), job), "error_summary") == "-"


def test_the_error_column_escapes_the_message(admin_client):
    job = failed_provision("<script>alert(1)</script>")
    error = cell(row_of(admin_client.get(CHANGELIST).content.decode(), job), "error_summary")
    assert "<script>" not in error
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in error


def test_changelist_times_are_compact_with_the_full_time_on_hover(admin_client, frozen):
    today = timed_provision(wait=timedelta(seconds=5), run=timedelta(seconds=1))
    InstanceProvision.objects.filter(pk=today.pk).update(
        requested_at=NOON - timedelta(hours=1), finished_at=NOON - timedelta(minutes=59)
    )
    row = row_of(admin_client.get(CHANGELIST).content.decode(), today)
    assert cell(row, "requested") == (
        '<time class="job-time" datetime="2026-11-22T11:00:00+00:00" '
        'title="2026-11-22 11:00:00 UTC">11:00:00</time>'
    )
    assert ">11:01:00</time>" in cell(row, "finished")
    InstanceProvision.objects.filter(pk=today.pk).update(requested_at=NOON - timedelta(days=3))
    row = row_of(admin_client.get(CHANGELIST).content.decode(), today)
    assert ">Nov 19, 12:00</time>" in cell(row, "requested")


def test_job_lists_leave_out_the_navigation_sidebar_so_the_columns_fit(admin_client):
    provision_in(JobState.PENDING)
    listing = admin_client.get(CHANGELIST)
    assert listing.context["is_nav_sidebar_enabled"] is False
    assert 'id="nav-sidebar"' not in listing.content.decode()
    page = admin_client.get(change_url(provision_in(JobState.NEW))).content.decode()
    assert 'id="nav-sidebar"' in page  # a job's page has room for it


def test_the_queue_column_shows_a_priority_other_than_0_under_the_queue(admin_client):
    urgent = provision_in(JobState.PENDING, enqueue__priority=10)
    usual = provision_in(JobState.PENDING)
    page = admin_client.get(CHANGELIST).content.decode()
    assert cell(row_of(page, urgent), "queue_display") == (
        'average_slow<br><small class="job-quiet">priority 10</small>'
    )
    assert cell(row_of(page, usual), "queue_display") == "average_slow"


def test_changelist_shows_attempts_out_of_the_maximum(admin_client):
    provision_in(JobState.SUCCEEDED)
    assert "1 of 5" in admin_client.get(CHANGELIST).content.decode()


def test_state_filter_lists_only_rows_in_that_state(admin_client):
    failed = [failed_provision(), failed_provision()]
    provision_in(JobState.PENDING)
    provision_in(JobState.SUCCEEDED)
    response = admin_client.get(CHANGELIST, {"state__exact": "failed"})
    assert sorted(listed(response)) == pks(*failed)


def test_queue_filter_offers_each_queue_present_once_and_lists_only_that_queue(admin_client):
    eu = provision_in(JobState.PENDING, enqueue__queue="provision_eu")
    provision_in(JobState.PENDING)  # the model's default queue, average_slow
    provision_in(JobState.SUCCEEDED)
    page = admin_client.get(CHANGELIST).content.decode()
    # AllValuesFieldListFilter filters on the bare field name: ?queue=..., not queue__exact.
    assert page.count('href="?queue=provision_eu"') == 1
    assert page.count('href="?queue=average_slow"') == 1
    assert listed(admin_client.get(CHANGELIST, {"queue": "provision_eu"})) == [eu.pk]


def test_state_and_queue_filters_combine(admin_client):
    wanted = provision_in(JobState.CANCELLED, enqueue__queue="provision_eu")
    provision_in(JobState.PENDING, enqueue__queue="provision_eu")
    provision_in(JobState.CANCELLED)
    response = admin_client.get(CHANGELIST, {"state__exact": "cancelled", "queue": "provision_eu"})
    assert listed(response) == [wanted.pk]


@pytest.mark.parametrize(("column", "field"), [("wait_time", "wait"), ("run_time", "run")])
def test_sorting_by_a_duration_column_orders_by_that_duration(admin_client, column, field):
    short = timedelta(seconds=3)
    medium = timedelta(minutes=2)
    long = timedelta(hours=2)
    other = timedelta(minutes=10)  # the duration that is not sorted on, between the others
    jobs = {
        duration: timed_provision(
            **{field: duration, ("run" if field == "wait" else "wait"): other}
        )
        for duration in (medium, long, short)
    }
    index = column_index(admin_client, column)
    ascending = listed(admin_client.get(CHANGELIST, {"o": str(index)}))
    descending = listed(admin_client.get(CHANGELIST, {"o": f"-{index}"}))
    assert ascending == pks(jobs[short], jobs[medium], jobs[long])
    assert descending == pks(jobs[long], jobs[medium], jobs[short])


def test_duration_columns_read_in_human_units(admin_client):
    timed_provision(wait=timedelta(seconds=90), run=timedelta(hours=2, minutes=5))
    page = admin_client.get(CHANGELIST).content.decode()
    assert "1m30s" in page
    assert "2h5m" in page


def test_search_by_instance_name_lists_only_that_instance(admin_client):
    wanted = InstanceProvisionFactory(instance__name="api-gateway", enqueue=True)
    InstanceProvisionFactory(instance__name="db-primary", enqueue=True)
    assert listed(admin_client.get(CHANGELIST, {"q": "gateway"})) == [wanted.pk]


def test_search_by_job_id_finds_that_job(admin_client):
    jobs = [InstanceProvisionFactory(instance__name=name) for name in ("alpha", "beta", "gamma")]
    assert listed(admin_client.get(CHANGELIST, {"q": str(jobs[1].pk)})) == [jobs[1].pk]


# Change page


def test_change_page_shows_the_lifecycle_timeline(admin_client, frozen):
    job = InstanceProvisionFactory(enqueue=True)
    frozen.now = NOON + timedelta(seconds=90)
    job.run()
    page = admin_client.get(change_url(job)).content.decode()
    assert ">Lifecycle</h2>" in page
    for label in ("Requested at", "Run at", "Started at", "Finished at", "Attempts", "Claimed by"):
        assert f"{label}:</label>" in page
    assert "Succeeded" in page
    assert "1m30s" in page  # waited from NOON to NOON + 90 s
    assert job.claimed_by in page


def test_change_page_shows_the_last_error_with_its_traceback(admin_client):
    job = failed_provision("Bad_Name!")
    page = admin_client.get(change_url(job)).content.decode()
    assert ">Last error</h2>" in page
    assert "project.instances.provider.ProviderError" in page
    assert "invalid server name &#x27;Bad_Name!&#x27;: use lowercase letters" in page
    assert "Traceback (most recent call last):" in page
    assert "in create_server" in page
    assert "raise ProviderError(" in page


def test_change_page_escapes_the_error_message_and_traceback(admin_client):
    job = failed_provision("<script>alert(1)</script>")
    assert "<script>alert(1)</script>" in job.error_message
    assert "<script>alert(1)</script>" in job.error_traceback
    page = admin_client.get(change_url(job)).content.decode()
    assert "<script>alert(1)</script>" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # In the message and the traceback's last line, then again in the history entry.
    assert page.count(f"invalid server name &#x27;{escaped}&#x27;") == 4


def test_change_page_lists_each_earlier_failure(admin_client):
    job = failed_provision("Bad_Name!")
    page = admin_client.get(change_url(job)).content.decode()
    assert "Earlier failures" in page
    assert f"attempt 1 at {job.error_history[0]['at']}" in page


def test_change_page_of_a_job_that_never_failed_shows_no_traceback(admin_client):
    job = provision_in(JobState.SUCCEEDED)
    page = admin_client.get(change_url(job)).content.decode()
    assert "Traceback (most recent call last)" not in page
    assert re.search(r'<label>Traceback:</label>\s*<div class="readonly">-</div>', page)


def test_change_form_has_no_inputs_for_lifecycle_fields(admin_client):
    job = provision_in(JobState.PENDING)
    form = admin_client.get(change_url(job)).context["adminform"].form
    assert set(form.fields) == {"instance", "queue", "priority", "max_attempts", "timeout"}


def test_posting_lifecycle_fields_changes_nothing_but_domain_fields_save(admin_client):
    job = provision_in(JobState.PENDING)
    data = change_form_data(job, priority=7, state="succeeded", attempts=4, claimed_by="me")
    response = admin_client.post(change_url(job), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    saved = InstanceProvision.objects.get(pk=job.pk)
    assert (saved.state, saved.attempts, saved.claimed_by) == (JobState.PENDING, 0, "")
    assert saved.priority == 7


def test_saving_a_form_loaded_before_the_job_finished_keeps_the_finished_state(admin_client):
    job = provision_in(JobState.PENDING)
    admin_client.get(change_url(job))  # someone opens the form...
    InstanceProvision.objects.get(pk=job.pk).run()  # ...a worker runs the job meanwhile...
    response = admin_client.post(change_url(job), change_form_data(job, priority=3))  # ...save
    assert response.status_code == 302
    saved = InstanceProvision.objects.get(pk=job.pk)
    assert (saved.state, saved.attempts, saved.priority) == (JobState.SUCCEEDED, 1, 3)
    assert saved.finished_at is not None


def test_a_job_finishing_while_the_admin_saves_it_keeps_its_finished_state(
    admin_client, monkeypatch
):
    """The narrowest race: the admin already holds the row as pending when the job succeeds."""
    job = provision_in(JobState.PENDING)
    admin_class = type(site._registry[InstanceProvision])
    save_model = admin_class.save_model

    def save_after_the_worker_finished(self, request, obj, form, change):
        assert obj.state == JobState.PENDING  # the admin's copy is stale from here on
        InstanceProvision.objects.get(pk=obj.pk).run()
        save_model(self, request, obj, form, change)

    monkeypatch.setattr(admin_class, "save_model", save_after_the_worker_finished)
    response = admin_client.post(change_url(job), change_form_data(job, priority=3))
    assert response.status_code == 302
    saved = InstanceProvision.objects.get(pk=job.pk)
    assert (saved.state, saved.attempts, saved.priority) == (JobState.SUCCEEDED, 1, 3)


def test_adding_a_job_in_the_admin_creates_it_new_and_not_queued(admin_client):
    instance = InstanceProvisionFactory().instance
    data = {"instance": instance.pk, "queue": "average_slow", "priority": 0, "max_attempts": 5}
    response = admin_client.post(reverse("admin:instances_instanceprovision_add"), data)
    assert response.status_code == 302
    added = InstanceProvision.objects.latest("pk")
    assert (added.instance, added.state, added.requested_at) == (instance, JobState.NEW, None)


# Actions


def test_requeue_action_requeues_failed_and_cancelled_rows_and_skips_the_rest(admin_client):
    failed = failed_provision()
    cancelled = provision_in(JobState.CANCELLED)
    succeeded = provision_in(JobState.SUCCEEDED)
    pending = provision_in(JobState.PENDING)
    response = run_action(admin_client, "requeue_jobs", failed, cancelled, succeeded, pending)
    assert response.status_code == 302
    assert messages_of(response) == [
        (
            messages.SUCCESS,
            "2 jobs requeued. 2 skipped: only failed or cancelled jobs can be requeued.",
        )
    ]
    assert [state_of(job) for job in (failed, cancelled, succeeded, pending)] == [
        JobState.PENDING,
        JobState.PENDING,
        JobState.SUCCEEDED,
        JobState.PENDING,
    ]
    requeued = InstanceProvision.objects.get(pk=failed.pk)
    assert (requeued.attempts, requeued.finished_at, requeued.claimed_by) == (0, None, "")
    assert InstanceProvision.objects.get(pk=succeeded.pk).attempts == 1


def test_requeue_action_touches_only_the_selected_rows(admin_client):
    selected, other = failed_provision(), failed_provision()
    response = run_action(admin_client, "requeue_jobs", selected)
    assert messages_of(response) == [(messages.SUCCESS, "1 job requeued.")]
    assert (state_of(selected), state_of(other)) == (JobState.PENDING, JobState.FAILED)


def test_requeue_action_skipping_every_row_is_a_warning(admin_client):
    succeeded = provision_in(JobState.SUCCEEDED)
    response = run_action(admin_client, "requeue_jobs", succeeded)
    assert messages_of(response) == [
        (
            messages.WARNING,
            "0 jobs requeued. 1 skipped: only failed or cancelled jobs can be requeued.",
        )
    ]
    assert state_of(succeeded) == JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("view", "message"),
    [
        ("state__exact=failed", "2 jobs requeued."),
        (
            "requested_at__year=2020",
            "2 jobs requeued. 1 skipped: only failed or cancelled jobs can be requeued.",
        ),
    ],
    ids=["state-filter", "date-hierarchy"],
)
def test_requeue_action_on_a_filtered_changelist_reports_true_counts(admin_client, view, message):
    """Requeueing moves rows out of a state or date filter; they were still selected."""
    failed = [failed_provision(), failed_provision()]
    succeeded = provision_in(JobState.SUCCEEDED)
    InstanceProvision.objects.update(requested_at=datetime(2020, 1, 15, tzinfo=UTC))
    response = run_action(admin_client, "requeue_jobs", *failed, succeeded, view=view)
    assert messages_of(response) == [(messages.SUCCESS, message)]
    assert [state_of(job) for job in failed] == [JobState.PENDING, JobState.PENDING]


def test_cancel_action_on_the_pending_filter_reports_true_counts(admin_client):
    pending = [provision_in(JobState.PENDING), provision_in(JobState.PENDING)]
    response = run_action(admin_client, "cancel_jobs", *pending, view="state__exact=pending")
    assert messages_of(response) == [(messages.SUCCESS, "2 jobs cancelled.")]
    assert [state_of(job) for job in pending] == [JobState.CANCELLED, JobState.CANCELLED]


def test_cancel_action_cancels_unstarted_rows_asks_running_ones_and_skips_finished(
    admin_client,
):
    new = provision_in(JobState.NEW)
    pending = provision_in(JobState.PENDING)
    running = provision_in(JobState.RUNNING)
    succeeded = provision_in(JobState.SUCCEEDED)
    response = run_action(admin_client, "cancel_jobs", new, pending, running, succeeded)
    assert messages_of(response) == [
        (
            messages.SUCCESS,
            "3 jobs cancelled (1 running, asked to stop). 1 skipped: only new, pending or "
            "running jobs can be cancelled.",
        )
    ]
    assert [state_of(job) for job in (new, pending, running, succeeded)] == [
        JobState.CANCELLED,
        JobState.CANCELLED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert InstanceProvision.objects.get(pk=running.pk).cancel_requested_at is not None


def test_actions_run_for_staff_with_the_change_permission(client, django_user_model):
    client.force_login(
        staff_user(django_user_model, "view_instanceprovision", "change_instanceprovision")
    )
    failed = failed_provision()
    response = run_action(client, "requeue_jobs", failed)
    assert messages_of(response) == [(messages.SUCCESS, "1 job requeued.")]
    assert state_of(failed) == JobState.PENDING


def test_actions_are_not_offered_to_staff_with_only_the_view_permission(viewer):
    provision_in(JobState.PENDING)
    response = viewer.get(CHANGELIST)
    assert response.context["action_form"] is None
    page = response.content.decode()
    assert "requeue_jobs" not in page
    assert "cancel_jobs" not in page


@pytest.mark.parametrize("action", ["requeue_jobs", "cancel_jobs"])
def test_staff_with_only_the_view_permission_cannot_run_actions(viewer, action):
    failed, pending = failed_provision(), provision_in(JobState.PENDING)
    response = run_action(viewer, action, failed, pending)
    assert not any("requeued" in text or "cancelled" in text for _, text in messages_of(response))
    assert (state_of(failed), state_of(pending)) == (JobState.FAILED, JobState.PENDING)


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
@pytest.mark.parametrize("action", ["requeue_jobs", "cancel_jobs"])
def test_actions_redirect_anonymous_and_non_staff_users_to_login(
    client, django_user_model, who, action
):
    if who == "non-staff":
        client.force_login(django_user_model.objects.create_user(username="customer"))
    failed, pending = failed_provision(), provision_in(JobState.PENDING)
    response = run_action(client, action, failed, pending)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('admin:login')}?next=")
    assert (state_of(failed), state_of(pending)) == (JobState.FAILED, JobState.PENDING)


# Workers


def test_workers_page_flags_live_and_stale_workers(admin_client):
    now = timesource.now()
    for name, heartbeat in [("live:1", now), ("stale:2", now - timedelta(minutes=5))]:
        Worker.objects.create(
            name=name, host=name.split(":")[0], pid=1, started_at=now, last_heartbeat_at=heartbeat
        )
    page = admin_client.get(reverse("admin:jobs_worker_changelist")).content.decode()
    live_row = page[page.index("live:1") :]
    stale_row = page[page.index("stale:2") :]
    assert 'class="worker-status alive"' in live_row.split("</tr>")[0]
    assert 'class="worker-status stale"' in stale_row.split("</tr>")[0]


def test_workers_page_shows_the_last_heartbeat_and_links_the_jobs_in_flight(admin_client, frozen):
    job = provision_in(JobState.RUNNING)
    Worker.objects.create(
        name="busy:7",
        host="busy",
        pid=7,
        started_at=NOON - timedelta(hours=1),
        last_heartbeat_at=NOON - timedelta(seconds=3),
        jobs_in_flight=[job.label, "gone.Model#1"],
    )
    response = admin_client.get(reverse("admin:jobs_worker_changelist"))
    assert response.context["is_nav_sidebar_enabled"] is False
    page = response.content.decode()
    row = page[page.index(">busy:7<") : page.index("</tr>", page.index(">busy:7<"))]
    assert cell(row, "heartbeat") == '<span title="2026-11-22 11:59:57 UTC">3s ago</span>'
    assert cell(row, "jobs_in_flight") == (
        f'<a href="{change_url(job)}" title="{job.label}">InstanceProvision#{job.pk}</a><br>'
        '<span title="gone.Model#1">Model#1</span>'
    )


def test_workers_cannot_be_added_or_edited_in_the_admin(admin_client):
    assert admin_client.get(reverse("admin:jobs_worker_add")).status_code == 403
    now = timesource.now()
    worker = Worker.objects.create(
        name="w:1", host="w", pid=1, started_at=now, last_heartbeat_at=now
    )
    response = admin_client.post(
        reverse("admin:jobs_worker_change", args=[worker.pk]), {"name": "renamed"}
    )
    assert response.status_code == 403
    assert Worker.objects.get(pk=worker.pk).name == "w:1"


def test_workers_page_shows_each_worker_process_under_its_supervisor(admin_client):
    now = timesource.now()
    supervisor = Worker.objects.create(
        name="host:10", host="host", pid=10, threads=8, started_at=now, last_heartbeat_at=now
    )
    Worker.objects.create(
        name="host:11",
        host="host",
        pid=11,
        threads=8,
        supervisor=supervisor,
        started_at=now,
        last_heartbeat_at=now,
    )
    changelist = reverse("admin:jobs_worker_changelist")
    page = admin_client.get(changelist, {"q": "host:10"}).content.decode()
    child_row = page[page.index(">host:11<") :].split("</tr>")[0]
    assert "host:10" in child_row  # its supervisor column
    assert ">8<" in child_row  # threads


def test_a_job_page_names_the_trace_it_was_enqueued_from(admin_client):
    job = InstanceProvisionFactory(enqueue=True)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    type(job).objects.filter(pk=job.pk).update(traceparent=traceparent)
    page = admin_client.get(change_url(job)).content.decode()
    assert traceparent in page
    assert "The trace the job was enqueued from (W3C traceparent)" in page
