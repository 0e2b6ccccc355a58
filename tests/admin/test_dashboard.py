"""The jobs dashboard and the workers page through the test client."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.models import JobState, Worker
from jobs.models.discovery import job_models
from jobs.monitoring import dashboard
from project.instances.models import InstanceProvision
from tests.admin.test_jobs import failed_provision, listed, provision_in
from tests.conftest import NOON
from tests.factories import InstanceProvisionFactory, RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:jobs_dashboard")
WORKERS = reverse("admin:jobs_worker_changelist")
COUNTS = (
    "new",
    "pending",
    "scheduled",
    "running",
    "finished_last_hour",
    "failed_last_hour",
    "failed_last_day",
    "cancelled_last_day",
)
PROVISIONS = "instances.instanceprovision"


def counted(rows, now) -> dict[str, int]:
    """What the dashboard should show for `rows`, written straight against the table."""
    return {name: rows.count() for name, rows in counted_rows(rows, now).items()}


def counted_rows(rows, now) -> dict:
    """The rows each dashboard count counts, written straight against the table."""
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    return {
        "new": rows.filter(state="new"),
        "pending": rows.filter(state="pending", run_at__lte=now),
        "scheduled": rows.filter(state="pending", run_at__gt=now),
        "running": rows.filter(state="running"),
        "finished_last_hour": rows.filter(
            state__in=["succeeded", "failed"], finished_at__gte=hour_ago
        ),
        "failed_last_hour": rows.filter(state="failed", finished_at__gte=hour_ago),
        "failed_last_day": rows.filter(state="failed", finished_at__gte=day_ago),
        "cancelled_last_day": rows.filter(state="cancelled", finished_at__gte=day_ago),
    }


class Tables(HTMLParser):
    """The dashboard's table rows by their `data-row`: each cell's text and link, by class."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, dict[str, str]]] = {}
        self._row: dict[str, dict[str, str]] | None = None
        self._cell: dict[str, str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-row" in attrs:
            self._row = self.rows.setdefault(attrs["data-row"], {})
            self._row["class"] = {"text": attrs.get("class") or ""}
        elif tag == "td" and self._row is not None:
            name = (attrs.get("class") or "").split()[-1:] or ["cell"]
            self._cell = self._row.setdefault(name[0], {"text": ""})
        elif tag == "a" and self._cell is not None:
            self._cell["href"] = attrs["href"]

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def counts(self, key: str) -> dict[str, int]:
        return {name: int(self.rows[key][name]["text"]) for name in COUNTS}


def tables(client) -> Tables:
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    return Tables(response.content.decode())


def finish_at(frozen, when, *, fail: bool = False, waited: timedelta = timedelta(0)):
    """A provision, due at `when - waited`, that a worker finished at `when`."""
    frozen.now = when - waited
    job = InstanceProvisionFactory(
        instance__name="Bad_Name!" if fail else "web", max_attempts=1, enqueue=True
    )
    frozen.now = when
    return job.run()


@pytest.fixture
def scene(frozen):
    """Jobs of three models in every state the dashboard counts, around NOON."""
    frozen.now = NOON - timedelta(days=2)
    failed_provision()  # too old to count
    provision_in(JobState.CANCELLED)  # too old to count
    frozen.now = NOON - timedelta(hours=3)
    failed_provision()  # in the last day, not the last hour
    provision_in(JobState.SUCCEEDED)  # more than an hour ago: not counted
    provision_in(JobState.CANCELLED)
    frozen.now = NOON - timedelta(minutes=30)
    failed_provision()
    frozen.now = NOON - timedelta(minutes=10)
    InstanceProvisionFactory(enqueue=True)  # the oldest runnable job
    frozen.now = NOON
    InstanceProvisionFactory(enqueue=True, enqueue__queue="eu")
    InstanceProvisionFactory(enqueue=True, enqueue__queue="eu", enqueue__delay=600)
    provision_in(JobState.NEW)
    provision_in(JobState.NEW, queue="eu")
    provision_in(JobState.RUNNING)
    provision_in(JobState.SUCCEEDED)
    provision_in(JobState.CANCELLED)
    UrgentJobFactory()  # new
    UrgentJobFactory(enqueue=True)
    UrgentJobFactory(enqueue=True, enqueue__delay=60)
    RecordingJobFactory(enqueue=True, enqueue__queue="eu")
    return frozen


def staff(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user(
        username=f"staff-{'-'.join(codenames) or 'none'}", is_staff=True
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def worker_row(name: str, *, heartbeat_ago: timedelta = timedelta(0), **fields) -> Worker:
    return Worker.objects.create(
        name=name,
        host=name.split(":")[0],
        pid=int(name.split(":")[1]),
        started_at=NOON - timedelta(hours=2),
        last_heartbeat_at=NOON - heartbeat_ago,
        **fields,
    )


# Counts


def test_each_job_model_shows_the_counts_its_table_has(admin_client, scene):
    shown = tables(admin_client)
    for model in (InstanceProvision, UrgentJob, RecordingJob):
        assert shown.counts(model._meta.label_lower) == counted(model.objects, NOON), model
    assert shown.counts(PROVISIONS) == {
        "new": 2,
        "pending": 2,
        "scheduled": 1,
        "running": 1,
        "finished_last_hour": 2,  # the one that succeeded at NOON, the one that failed at 11:30
        "failed_last_hour": 1,
        "failed_last_day": 2,
        "cancelled_last_day": 2,
    }


def test_each_queue_shows_the_counts_of_every_job_model_on_it(admin_client, scene):
    shown = tables(admin_client)
    for queue in ("average_slow", "eu", "urgent"):
        expected = [counted(model.objects.filter(queue=queue), NOON) for model in job_models()]
        assert shown.counts(queue) == {name: sum(c[name] for c in expected) for name in COUNTS}
    assert shown.counts("eu") == {
        "new": 1,
        "pending": 2,
        "scheduled": 1,
        "running": 0,
        "finished_last_hour": 0,
        "failed_last_hour": 0,
        "failed_last_day": 0,
        "cancelled_last_day": 0,
    }
    assert shown.counts("total") == {
        name: sum(counted(model.objects, NOON)[name] for model in job_models()) for name in COUNTS
    }


def test_each_count_of_a_job_model_opens_its_changelist_listing_exactly_those_rows(
    admin_client, scene
):
    cells = tables(admin_client).rows[PROVISIONS]
    changelist = reverse("admin:instances_instanceprovision_changelist")
    for name, rows in counted_rows(InstanceProvision.objects, NOON).items():
        href = cells[name]["href"].replace("&amp;", "&")
        assert href.startswith(f"{changelist}?state__"), href
        pks = sorted(rows.values_list("pk", flat=True))
        assert pks, name  # the scene has rows of every count
        assert sorted(listed(admin_client.get(href))) == pks, name


def test_models_without_an_admin_show_their_counts_without_links(admin_client, scene):
    cells = tables(admin_client).rows["testapp.urgentjob"]
    assert cells["pending"] == {"text": "1"}


def test_oldest_runnable_job(admin_client, frozen):
    frozen.now = NOON - timedelta(minutes=10)
    InstanceProvisionFactory(enqueue=True)
    frozen.now = NOON + timedelta(seconds=40)
    assert tables(admin_client).rows[PROVISIONS]["oldest_wait"]["text"] == "10m40s"


def test_finished_in_the_last_hour_is_the_sum_of_the_charts_bars_this_minute_included(
    admin_client, frozen
):
    """The issue: "finished / min 0.0" beside a chart showing 8 jobs that minute."""
    now = NOON + timedelta(seconds=40)
    for _ in range(6):
        finish_at(frozen, NOON + timedelta(seconds=30))  # this minute, not over yet
    for _ in range(2):
        finish_at(frozen, NOON + timedelta(seconds=35), fail=True)
    finish_at(frozen, now - timedelta(hours=1) + timedelta(seconds=1))  # the hour's first second
    finish_at(frozen, now - timedelta(hours=1) - timedelta(seconds=1))  # just before the hour
    UrgentJob.objects.create().enqueue()  # a second model with rows: the table has a total
    frozen.now = now
    page = admin_client.get(DASHBOARD).content.decode()
    row = Tables(page).rows[PROVISIONS]
    assert row["finished_last_hour"]["text"] == "9"
    assert row["failed_last_hour"]["text"] == "2"
    assert Tables(page).rows["total"]["finished_last_hour"]["text"] == "9"
    finished = chart_columns(page)[:61]
    assert finished[0] == ("11:00 (from 11:00:40)", "1 succeeded, 0 failed")
    assert finished[-1] == ("12:00", "6 succeeded, 2 failed")
    bars = [re.fullmatch(r"(\d+) succeeded, (\d+) failed", text).groups() for _, text in finished]
    assert sum(int(ok) + int(failed) for ok, failed in bars) == 9
    assert sum(int(failed) for _, failed in bars) == 2
    changelist = row["finished_last_hour"]["href"].replace("&amp;", "&")
    assert "state__in=succeeded%2Cfailed" in changelist
    assert len(listed(admin_client.get(changelist))) == 9


def chart_columns(page: str) -> list[tuple[str, str]]:
    """Each chart column's tooltip: (its minute, what it says), both charts one after another."""
    return re.findall(r"<g><title>([^<]*): ([^<:]*)</title>", page)


def test_summary_costs_one_query_per_job_model_however_many_queues(frozen):
    for queue in ("a", "b", "c", "d"):
        InstanceProvisionFactory(enqueue=True, enqueue__queue=queue)
        finish_at(frozen, NOON - timedelta(minutes=2))
    with CaptureQueriesContext(connection) as queries:
        summary = dashboard.summarize(job_models())
    assert len(queries) == len(job_models())
    # "average_slow": the address attachments' queue (a model's queue shows with no rows)
    assert sorted(summary.queues) == ["a", "average_slow", "b", "c", "d"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's EXPLAIN")
def test_the_summary_query_reads_only_what_the_partial_indexes_cover(frozen):
    """With sequential scans priced out, the plan shows the query *can* use the indexes."""
    rows = dashboard._grouped_rows(InstanceProvision, NOON)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = rows.explain()
    assert "Seq Scan" not in plan, plan
    for index in ("_new", "_run", "_fin"):
        assert re.search(rf"Index Scan on \w+{index}\b", plan), plan
    assert re.search(r"Index Scan on \w+_(due|pend|any)\b", plan), plan


# Charts


def test_charts_show_each_minute_of_the_last_hour(admin_client, frozen):
    for _ in range(2):
        finish_at(frozen, NOON - timedelta(minutes=3), waited=timedelta(minutes=2))
    finish_at(frozen, NOON - timedelta(minutes=3), fail=True)
    frozen.now = NOON
    page = admin_client.get(DASHBOARD).content.decode()
    charts = page[page.index('<div class="module" id="charts">') : page.index('id="workers"')]
    assert charts.count('<svg class="jobs-chart"') == 2
    assert "<script" not in charts
    columns = re.findall(r"<g><title>(\d\d:\d\d): ([^<]*)</title>(.*?)</g>", page)
    assert len(columns) == 122  # two charts, the 61 minutes that hold the hour since 11:00:00
    assert columns[0][0] == "11:00"
    assert columns[60][0] == "12:00"
    finished = dict((time, (text, bars)) for time, text, bars in columns[:61])
    waits = dict((time, (text, bars)) for time, text, bars in columns[61:])
    assert finished["11:57"][0] == "2 succeeded, 1 failed"
    assert finished["11:57"][1].count("<rect x=") == 2  # green under red
    assert waits["11:57"][0] == "longest wait 2m"
    assert finished["11:58"] == ("0 succeeded, 0 failed", finished["11:58"][1])
    assert "<rect x=" not in finished["11:58"][1]


# Permissions


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_anonymous_and_non_staff_users_are_sent_to_log_in(client, django_user_model, who):
    if who == "non-staff":
        client.force_login(django_user_model.objects.create_user(username="customer"))
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('admin:login')}?next=")


def test_staff_see_only_the_job_models_they_may_view(client, django_user_model, scene):
    client.force_login(staff(django_user_model, "view_instanceprovision"))
    shown = tables(client)
    assert shown.counts(PROVISIONS) == counted(InstanceProvision.objects, NOON)
    assert "testapp.urgentjob" not in shown.rows
    assert "testapp.recordingjob" not in shown.rows
    assert "urgent" not in shown.rows  # a queue only UrgentJob rows are on
    assert shown.counts("eu") == counted(InstanceProvision.objects.filter(queue="eu"), NOON)


def test_workers_are_shown_only_with_the_permission_to_view_them(client, django_user_model):
    worker_row("host:1")
    client.force_login(staff(django_user_model, "view_instanceprovision"))
    assert 'id="workers"' not in client.get(DASHBOARD).content.decode()
    client.force_login(staff(django_user_model, "view_worker"))
    assert "host:1" in tables(client).rows


def test_staff_without_any_permission_see_no_job_model(client, django_user_model, scene):
    client.force_login(staff(django_user_model))
    response = client.get(DASHBOARD)
    assert "You have no permission to view any job model." in response.content.decode()
    assert Tables(response.content.decode()).rows == {}


# Workers


def test_workers_busy_idle_and_stale_with_what_each_is_running(admin_client, frozen):
    job = provision_in(JobState.RUNNING)
    supervisor = worker_row("host:10", threads=4)
    worker_row("host:11", threads=4, supervisor=supervisor, jobs_in_flight=[job.label])
    worker_row("lone:20", threads=2)
    worker_row("dead:30", heartbeat_ago=timedelta(minutes=5), jobs_in_flight=["x.Gone#1"])
    worker_row("done:40", state=Worker.State.STOPPED)
    response = admin_client.get(DASHBOARD)
    page = response.content.decode()
    shown = Tables(page)
    assert set(shown.rows) >= {"host:11", "lone:20", "dead:30"}
    assert "host:10" not in shown.rows  # a supervisor runs no job itself
    assert "done:40" not in shown.rows
    assert "1 of 2 workers busy</strong>, 1 of 6 threads running a job." in " ".join(page.split())
    assert shown.rows["host:11"]["in-flight"] == {
        "text": job.label,
        "href": reverse("admin:instances_instanceprovision_change", args=[job.pk]),
    }
    assert shown.rows["lone:20"]["in-flight"]["text"] == "idle"
    assert shown.rows["dead:30"]["class"]["text"] == "stale"
    assert shown.rows["dead:30"]["heartbeat"]["text"] == "5m ago stale"
    assert shown.rows["dead:30"]["in-flight"] == {"text": "x.Gone#1"}
    assert shown.rows["lone:20"]["class"]["text"] == ""
    assert f'href="{WORKERS}?status=stale">1 stale</a>' in page


def test_worker_stale_after_one_lease_without_a_heartbeat(admin_client, frozen, settings):
    settings.JOBS_LEASE_SECONDS = 30
    worker_row("fresh:1", heartbeat_ago=timedelta(seconds=29))
    worker_row("quiet:2", heartbeat_ago=timedelta(seconds=30))
    rows = tables(admin_client).rows
    assert (rows["fresh:1"]["class"]["text"], rows["quiet:2"]["class"]["text"]) == ("", "stale")


# Escaping


def test_queue_names_worker_fields_and_job_labels_are_escaped(admin_client, frozen):
    script = "<script>alert(1)</script>"
    InstanceProvisionFactory(queue=script).enqueue()
    worker_row("host:1", queues=script, jobs_in_flight=[script])
    page = admin_client.get(DASHBOARD).content.decode()
    assert script not in page
    # the queue's row key and name, its service level's row key and name, two in the workers
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 6


# Links to it


def test_the_admin_index_and_the_workers_page_link_to_the_dashboard(admin_client):
    for page in (reverse("admin:index"), WORKERS):
        assert f'href="{DASHBOARD}"' in admin_client.get(page).content.decode()


# The workers page


def test_workers_page_flags_stale_workers_and_filters_by_status(admin_client, frozen):
    worker_row("live:1")
    worker_row("dead:2", heartbeat_ago=timedelta(minutes=5))
    worker_row("done:3", heartbeat_ago=timedelta(minutes=5), state=Worker.State.STOPPED)
    page = admin_client.get(WORKERS).content.decode()
    dead_row = page[page.index(">dead:2<") :].split("</tr>")[0]
    done_row = page[page.index(">done:3<") :].split("</tr>")[0]
    assert "5m ago" in dead_row
    assert ">stale</strong>" in dead_row
    assert ">stale</strong>" not in done_row  # stopped, not presumed dead
    for status, names in [("alive", ["live:1"]), ("stale", ["dead:2"]), ("stopped", ["done:3"])]:
        response = admin_client.get(WORKERS, {"status": status})
        assert [worker.name for worker in response.context["cl"].result_list] == names
