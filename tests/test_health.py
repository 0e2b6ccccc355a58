"""Health checks: the report, the JSON view at /jobs/health/ and `manage.py jobs health`."""

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs import health, health_view
from jobs.errors import ConfigurationError
from jobs.models import Heartbeat, JobState, Worker
from jobs.queues import configured_queues
from jobs.registry import job_models
from project import settings as project_settings
from project.instances.models import InstanceProvision
from tests.conftest import NOON, manage
from tests.factories import InstanceProvisionFactory, RecordingJobFactory, UrgentJobFactory
from tests.test_dashboard import worker_row
from tests.testapp.models import RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db

HEALTH = reverse("jobs-health")
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
SCHEDULE = {"tick": {"job": "testapp.RecordingJob", "every": "1m"}}


@pytest.fixture
def urgent(settings, frozen):
    """One queue with an SLA of 30 s, served by a live worker: healthy until a test breaks it."""
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s"}}
    worker_row("w:1")
    return frozen


def problems(now=None) -> list[tuple[str, str, str | None, str]]:
    report = health.check_health(now)
    return [(p.severity, p.code, p.queue, p.reason) for p in report.problems]


def codes() -> list[str]:
    return [problem.code for problem in health.check_health().problems]


def get_health(client, status_code: int) -> dict:
    response = client.get(HEALTH)
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def heartbeat(frozen, *, due, started, queue: str = "urgent") -> Heartbeat:
    """A heartbeat the clock enqueued at `due` and a worker started at `started` (if ever)."""
    frozen.now = due
    beat = Heartbeat().enqueue(queue=queue)
    if started is not None:
        frozen.now = started
        beat.run()
    frozen.now = NOON
    return beat


def ended(frozen, count: int, *, fail: bool, queue: str = "urgent", ago=MINUTE) -> None:
    """`count` jobs of `queue` that ran to an end (failed for good, or succeeded) `ago`."""
    frozen.now = NOON - ago
    for _ in range(count):
        RecordingJobFactory(fail=fail, enqueue=True, enqueue__queue=queue).run()
    frozen.now = NOON


def run_command(*args: str) -> tuple[int, str]:
    """`manage.py jobs ARGS` in this process (on the frozen clock): exit code and output."""
    out = StringIO()
    try:
        call_command("jobs", *args, stdout=out)
    except SystemExit as exit:
        return exit.code, out.getvalue()
    return 0, out.getvalue()


# The proof


@pytest.mark.django_db(transaction=True)
def test_a_queue_held_past_its_sla_answers_503_with_the_reason_then_200_once_drained(
    client, urgent
):
    UrgentJobFactory.create_batch(3, enqueue=True)
    urgent.now = NOON + 20 * SECOND
    assert get_health(client, 200)["status"] == "ok"

    urgent.now = NOON + 45 * SECOND
    assert get_health(client, 503) == {
        "status": "critical",
        "problems": [
            {
                "severity": "critical",
                "code": "over_sla",
                "queue": "urgent",
                "reason": "queue urgent: oldest job has waited 45s, over its SLA of 30s",
            }
        ],
        "checked_at": "2026-11-22T12:00:45+00:00",
    }

    drained = manage("runjobs", "--burst", "--queues", "urgent")
    assert drained.returncode == 0, drained.stderr
    assert set(UrgentJob.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}
    assert get_health(client, 200) == {
        "status": "ok",
        "problems": [],
        "checked_at": "2026-11-22T12:00:45+00:00",
    }


# Over SLA


def test_a_wait_up_to_the_sla_is_fine_and_past_it_is_critical(urgent):
    UrgentJobFactory(enqueue=True)
    assert problems(NOON + 30 * SECOND) == []
    assert problems(NOON + 30.5 * SECOND) == [
        (
            "critical",
            "over_sla",
            "urgent",
            "queue urgent: oldest job has waited 30.5s, over its SLA of 30s",
        )
    ]


def test_the_oldest_due_job_of_any_job_model_counts_and_scheduled_jobs_do_not(urgent):
    urgent.now = NOON - 2 * MINUTE
    UrgentJobFactory(enqueue=True, enqueue__delay=600)  # due later: not waiting yet
    RecordingJobFactory(enqueue=True, enqueue__queue="urgent")
    UrgentJobFactory(enqueue=True, enqueue__queue="elsewhere")  # not a queue with an SLA
    urgent.now = NOON - MINUTE
    UrgentJobFactory(enqueue=True)
    urgent.now = NOON
    assert problems() == [
        (
            "critical",
            "over_sla",
            "urgent",
            "queue urgent: oldest job has waited 2m, over its SLA of 30s",
        )
    ]


def test_running_and_finished_jobs_are_not_waiting(urgent):
    urgent.now = NOON - 2 * MINUTE
    for job in UrgentJobFactory.create_batch(2, enqueue=True):
        job.run()
    urgent.now = NOON
    assert problems() == []


def test_a_queue_without_an_sla_is_never_over_it(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {}}
    urgent.now = NOON - timedelta(days=1)
    UrgentJobFactory(enqueue=True)
    urgent.now = NOON
    assert problems() == []


def test_a_heartbeat_queue_over_its_sla_by_its_live_latency(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s", "heartbeat": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    heartbeat(urgent, due=NOON - MINUTE, started=NOON - 15 * SECOND)
    assert problems() == [
        (
            "critical",
            "over_sla",
            "urgent",
            "queue urgent: live latency (heartbeat) is 45s, over its SLA of 30s",
        )
    ]
    heartbeat(urgent, due=NOON - 10 * SECOND, started=NOON - 5 * SECOND)
    assert problems() == []


# No live worker


@pytest.mark.parametrize(
    ("fields", "serves"),
    [
        ({}, True),
        ({"queues": "urgent"}, True),
        ({"queues": "mail,urgent"}, True),
        ({"queues": "mail"}, False),
        ({"queues": "urgent_fast"}, False),
        ({"heartbeat_ago": 2 * MINUTE}, False),  # stale: older than one lease (60 s)
        ({"state": Worker.State.STOPPED}, False),
    ],
)
def test_a_queue_needs_a_running_worker_with_a_fresh_heartbeat_that_serves_it(
    settings, frozen, fields, serves
):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s"}}
    worker_row("w:1", **fields)
    expected = (
        []
        if serves
        else [("critical", "no_worker", "urgent", "queue urgent: no live worker serves it")]
    )
    assert problems() == expected


def test_a_supervisor_runs_no_jobs_itself_so_it_serves_no_queue(settings, frozen):
    settings.JOBS_QUEUES = {"urgent": {}}
    supervisor = worker_row("s:1")
    worker_row("w:2", supervisor=supervisor, heartbeat_ago=5 * MINUTE)
    assert codes() == ["no_worker"]
    worker_row("w:3", supervisor=supervisor)
    assert codes() == []


# Heartbeat stale


def test_a_heartbeat_queue_whose_heartbeat_never_ran_is_stale(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"heartbeat": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    assert problems() == [
        (
            "critical",
            "heartbeat_stale",
            "urgent",
            "queue urgent: no heartbeat has started yet (stale after 3m)",
        )
    ]


def test_a_heartbeat_queue_is_stale_when_no_heartbeat_started_in_three_minutes_and_none_waits_less(
    urgent, settings
):
    settings.JOBS_QUEUES = {"urgent": {"heartbeat": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    heartbeat(urgent, due=NOON - 4 * MINUTE, started=NOON - 3 * MINUTE)
    assert problems() == []
    heartbeat(urgent, due=NOON - MINUTE, started=None)  # enqueued, waiting 1m30s: slow, alive
    assert problems(NOON + 30 * SECOND) == []
    heartbeat(urgent, due=NOON - 3 * MINUTE, started=None)  # waiting 3m30s: nobody takes them
    assert problems(NOON + 30 * SECOND) == [
        (
            "critical",
            "heartbeat_stale",
            "urgent",
            "queue urgent: no heartbeat has started for 3m30s (stale after 3m)",
        )
    ]


def test_a_queue_without_heartbeats_is_never_stale(urgent):
    assert Heartbeat.objects.count() == 0
    assert problems() == []


# The clock


def test_without_schedules_or_heartbeats_no_clock_is_needed(urgent, settings):
    settings.JOBS_SCHEDULE = {}
    assert problems() == []


@pytest.mark.parametrize("config", ["schedule", "heartbeat"])
def test_schedules_or_heartbeats_need_a_running_worker_that_runs_the_clock(
    urgent, settings, config
):
    if config == "schedule":
        settings.JOBS_SCHEDULE = SCHEDULE
    else:
        settings.JOBS_QUEUES = {"urgent": {"heartbeat": True}}
        heartbeat(urgent, due=NOON, started=NOON)
    worker_row("w:2", clock_ticked_at=NOON, state=Worker.State.STOPPED)
    assert problems() == [
        (
            "critical",
            "clock_stopped",
            None,
            "no running worker runs the clock: schedules and heartbeats are not enqueued",
        )
    ]


def test_the_clock_is_stopped_when_no_worker_ticked_it_for_two_minutes(urgent, settings):
    settings.JOBS_SCHEDULE = SCHEDULE
    worker_row("w:2", clock_ticked_at=NOON - 2 * MINUTE)
    worker_row("w:3", clock_ticked_at=NOON - 5 * MINUTE)
    assert problems() == []
    assert problems(NOON + SECOND) == [
        (
            "critical",
            "clock_stopped",
            None,
            "no worker's clock has ticked since 2026-11-22 11:58:00 UTC (2m1s ago): "
            "schedules and heartbeats are not enqueued",
        )
    ]


# Failure rate


def test_a_failure_rate_over_the_queue_limit_is_a_warning_and_still_200(client, urgent):
    ended(urgent, 4, fail=False)
    ended(urgent, 6, fail=True)
    assert problems() == [
        (
            "warning",
            "failure_rate",
            "urgent",
            "queue urgent: 6 of 10 jobs that ended in the last hour failed (60%), "
            "over its limit of 50%",
        )
    ]
    assert get_health(client, 200)["status"] == "warning"


def test_a_failure_rate_at_the_limit_is_fine(urgent):
    ended(urgent, 5, fail=False)
    ended(urgent, 5, fail=True)
    assert problems() == []


def test_the_failure_rate_waits_for_ten_jobs_that_ended(urgent):
    ended(urgent, 9, fail=True)
    assert problems() == []
    ended(urgent, 1, fail=True)
    assert codes() == ["failure_rate"]


def test_the_failure_rate_reads_only_the_last_hour(urgent):
    ended(urgent, 10, fail=True, ago=timedelta(minutes=61))
    ended(urgent, 10, fail=False)
    assert problems() == []


def test_the_failure_rate_limit_is_per_queue_and_may_be_off(urgent, settings):
    ended(urgent, 10, fail=True)
    ended(urgent, 10, fail=True, queue="mail")
    settings.JOBS_QUEUES = {"urgent": {"max_failure_rate": None}, "mail": {"max_failure_rate": 1}}
    assert problems() == []
    settings.JOBS_QUEUES = {"urgent": {"max_failure_rate": 0.9}, "mail": {}}
    assert [(p[1], p[2]) for p in problems()] == [
        ("failure_rate", "urgent"),
        ("failure_rate", "mail"),
    ]


def test_cancelled_jobs_and_retries_are_not_failures(urgent):
    ended(urgent, 10, fail=False)
    for _ in range(10):
        RecordingJobFactory(enqueue=True, enqueue__queue="urgent").cancel()
        RecordingJobFactory(fail=True, max_attempts=2, enqueue=True, enqueue__queue="urgent").run()
    assert RecordingJob.objects.filter(state=JobState.PENDING).count() == 10  # retries
    assert problems() == []


# The report as a whole


def test_critical_problems_come_first_and_set_the_status(client, urgent, settings):
    settings.JOBS_QUEUES = {"mail": {}, "urgent": {"sla": "30s"}}
    worker_row("w:2", queues="mail")
    Worker.objects.filter(name="w:1").update(queues="mail")
    ended(urgent, 10, fail=True, queue="mail")
    body = get_health(client, 503)
    assert body["status"] == "critical"
    assert [(p["severity"], p["code"], p["queue"]) for p in body["problems"]] == [
        ("critical", "no_worker", "urgent"),
        ("warning", "failure_rate", "mail"),
    ]


def test_the_example_project_promises_an_sla_on_the_queue_provisions_use(settings):
    settings.JOBS_QUEUES = project_settings.JOBS_QUEUES
    queue = configured_queues()[InstanceProvision._meta.get_field("queue").default]
    assert queue.sla == timedelta(minutes=10)
    assert queue.heartbeat


# Safe to expose


def test_the_json_holds_no_job_data(client, urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s", "heartbeat": True}, "mail": {}}
    settings.JOBS_SCHEDULE = SCHEDULE
    Worker.objects.update(queues="urgent", host="secret-host.internal")
    urgent.now = NOON - 10 * MINUTE
    secrets = ["label-a1b2c3", "boom in label-d4e5f6", "secret-host.internal", "w:1"]
    RecordingJobFactory(label_text=secrets[0], enqueue=True, enqueue__queue="urgent")
    for _ in range(10):
        RecordingJobFactory(label_text="label-d4e5f6", fail=True, enqueue=True).run()
    InstanceProvisionFactory(instance__name="web-secret-name", enqueue=True)
    urgent.now = NOON
    body = get_health(client, 503)

    assert {p["code"] for p in body["problems"]} == {
        "over_sla",
        "no_worker",
        "heartbeat_stale",
        "clock_stopped",
    }
    assert set(body) == {"status", "problems", "checked_at"}
    for problem in body["problems"]:
        assert set(problem) == {"severity", "code", "queue", "reason"}
        assert problem["queue"] in {"urgent", "mail", None}
    text = json.dumps(body)
    for secret in [*secrets, "web-secret-name", "Boom", "RecordingJob", "testapp", "instances"]:
        assert secret not in text
    assert "#" not in text  # no job labels (app.Model#pk)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_only_get_and_head_are_allowed(client, urgent, method):
    response = getattr(client, method)(HEALTH)
    assert response.status_code == 405
    assert sorted(response["Allow"].split(", ")) == ["GET", "HEAD"]


def test_head_answers_the_status_without_a_body(client, urgent):
    assert client.head(HEALTH).status_code == 200
    UrgentJobFactory(enqueue=True, enqueue__run_at=NOON - MINUTE)
    response = client.head(HEALTH)
    assert response.status_code == 503
    assert response.content == b""


def test_the_answer_is_never_cached_and_needs_no_login(client, urgent):
    response = client.get(HEALTH)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_the_checks_cost_the_same_few_queries_however_many_jobs(urgent, settings):
    settings.JOBS_QUEUES = {
        "urgent": {"sla": "30s", "heartbeat": True},
        "average_slow": {"sla": "10m"},
        "mail": {},
    }
    worker_row("w:2", clock_ticked_at=NOON)
    # One grouped query per job model, one for the workers, one for the clock (there are
    # schedules: the heartbeats), two for the one heartbeat queue.
    expected = len(job_models()) + 1 + 1 + 2

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            health.check_health()
        return len(captured)

    assert queries() == expected
    for ago in (3, 2, 1):
        urgent.now = NOON - ago * MINUTE
        UrgentJobFactory.create_batch(10, enqueue=True)
        InstanceProvisionFactory.create_batch(10, enqueue=True)
        ended(urgent, 10, fail=True, queue="mail", ago=ago * MINUTE)
        heartbeat(urgent, due=NOON - ago * MINUTE, started=NOON - ago * MINUTE)
    assert set(codes()) == {"over_sla", "failure_rate"}
    assert queries() == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's EXPLAIN")
def test_the_queue_query_reads_only_what_the_partial_indexes_cover(frozen):
    """With sequential scans priced out, the plan shows the query *can* use the indexes."""
    rows = health._queue_rows(InstanceProvision, ["average_slow", "urgent"], NOON)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = rows.explain()
    assert "Seq Scan" not in plan, plan
    assert re.search(r"Index Scan on \w+_fin\b", plan), plan
    assert re.search(r"Index Scan on \w+_(due|pend|any)\b", plan), plan


# When the checks cannot run


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["urgent"], "JOBS_QUEUES must be a dict of queue name to options, got ['urgent']"),
        ({"urgent": {"sla": "soon"}}, "JOBS_QUEUES['urgent']['sla'] is 'soon'; write a duration"),
        ({"urgent": {"slo": "30s"}}, "JOBS_QUEUES['urgent'] has unknown option(s) 'slo'"),
    ],
)
def test_bad_jobs_queues_is_a_clear_unknown_not_a_crash(client, settings, frozen, setting, message):
    settings.JOBS_QUEUES = setting
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        health.check_health()
    body = get_health(client, 503)
    assert body["status"] == "unknown"
    [problem] = body["problems"]
    assert (problem["code"], problem["queue"]) == ("configuration", None)
    assert problem["reason"].startswith(message)
    code, output = run_command("health")
    assert code == 3
    assert output.startswith(f"JOBS UNKNOWN - {message}")
    assert len(output.strip().splitlines()) == 1


def test_a_bad_schedule_is_unknown_too(client, urgent, settings):
    settings.JOBS_SCHEDULE = {"tick": {"job": "testapp.RecordingJob", "cron": "every day"}}
    assert get_health(client, 503)["problems"][0]["reason"].startswith(
        "JOBS_SCHEDULE['tick']['cron'] is 'every day'"
    )


def test_an_unreachable_database_is_503_without_its_details(client, urgent, monkeypatch):
    def unreachable(now=None):
        raise OperationalError('connection to server at "db.internal" failed')

    monkeypatch.setattr(health_view, "check_health", unreachable)
    body = get_health(client, 503)
    assert body["status"] == "unknown"
    assert body["problems"] == [
        {
            "severity": "critical",
            "code": "database",
            "queue": None,
            "reason": "cannot read the job tables; see the server log",
        }
    ]


# The command


def test_command_ok_exits_0_with_one_line(urgent):
    assert run_command("health") == (0, "JOBS OK - no problems\n")


def test_command_warning_exits_1_with_a_line_per_problem(urgent):
    ended(urgent, 10, fail=True)
    reason = (
        "queue urgent: 10 of 10 jobs that ended in the last hour failed (100%), "
        "over its limit of 50%"
    )
    assert run_command("health") == (
        1,
        f"JOBS WARNING - {reason}\nWARNING failure_rate: {reason}\n",
    )


def test_command_critical_exits_2_and_names_the_worst_problem_first(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s"}, "mail": {}}
    Worker.objects.update(queues="urgent")
    ended(urgent, 10, fail=True)
    urgent.now = NOON - MINUTE
    UrgentJobFactory(enqueue=True)
    urgent.now = NOON
    code, output = run_command("health")
    assert code == 2
    assert output.splitlines() == [
        "JOBS CRITICAL - queue urgent: oldest job has waited 1m, over its SLA of 30s (+2 more)",
        "CRITICAL over_sla: queue urgent: oldest job has waited 1m, over its SLA of 30s",
        "CRITICAL no_worker: queue mail: no live worker serves it",
        "WARNING failure_rate: queue urgent: 10 of 10 jobs that ended in the last hour failed "
        "(100%), over its limit of 50%",
    ]


def test_command_json_prints_what_the_view_answers(client, urgent):
    ended(urgent, 10, fail=True)
    code, output = run_command("health", "--json")
    assert code == 1
    assert json.loads(output) == get_health(client, 200)


def test_command_as_a_real_process_exits_with_the_status():
    result = manage("jobs", "health")  # the test settings configure no queue
    assert (result.returncode, result.stdout) == (0, "JOBS OK - no problems\n")


def test_command_with_the_database_unreachable_exits_3_without_a_traceback():
    result = manage("jobs", "health", DATABASE_URL="postgres://nobody@127.0.0.1:1/none")
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("JOBS UNKNOWN - cannot read the job tables: ")
    assert "Connection refused" in result.stdout
    assert "Traceback" not in result.stderr


def test_command_without_a_subcommand_says_which_exist():
    result = manage("jobs")
    assert result.returncode == 2
    assert "the following arguments are required: SUBCOMMAND" in result.stderr
    assert "health" in manage("jobs", "--help").stdout
