"""Health checks: the report, the JSON view at /jobs/health/ and `manage.py jobs health`."""

import json
import re
import signal
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.conf.queues import DEFAULT_SLA, configured_queues
from jobs.errors import ConfigurationError
from jobs.models import JobState, LatencyProbe, Worker
from jobs.models.discovery import served_models
from jobs.monitoring import health
from jobs.views import health as health_view
from project import settings as project_settings
from project.instances.models import InstanceProvision
from tests.admin.test_dashboard import worker_row
from tests.conftest import NOON, manage, start_manage, wait_for
from tests.factories import InstanceProvisionFactory, RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import RecordingJob, UrgentJob

pytestmark = pytest.mark.django_db

HEALTH = reverse("jobs-health")
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
SCHEDULE = {"tick": {"job": "testapp.RecordingJob", "every": "1m"}}
# The default queues of the test project's served job models: provisions, tests' jobs and
# tasks, urgent jobs. With no JOBS_QUEUES, these are what the checks watch when all is idle.
DEFAULT_QUEUES = ["average_slow", "default", "urgent"]
START = "start a worker whose --queues include it, or one without --queues"


@pytest.fixture
def urgent(settings, frozen):
    """One queue with an SLA of 30 s, served by a live worker: healthy until a test breaks it."""
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s"}}
    worker_row("w:1")
    return frozen


def problems(now=None, *, queue: str | None = None) -> list[tuple[str, str, str | None, str]]:
    """The report's problems, or only those of `queue`."""
    report = health.check_health(now)
    return [
        (p.severity, p.code, p.queue, p.reason)
        for p in report.problems
        if queue is None or p.queue == queue
    ]


def codes(*, queue: str | None = None) -> list[str]:
    return [problem[1] for problem in problems(queue=queue)]


def get_health(client, status_code: int) -> dict:
    response = client.get(HEALTH)
    assert response.status_code == status_code, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def probe(frozen, *, due, started, queue: str = "urgent") -> LatencyProbe:
    """A latency probe the clock enqueued at `due` and a worker started at `started` (if ever)."""
    frozen.now = due
    beat = LatencyProbe().enqueue(queue=queue)
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


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_with_no_jobs_queues_pending_jobs_and_no_worker_are_critical_until_runjobs_serves_them(
    client, settings
):
    """Starts one real `runjobs` process (one thread, busy with a 60 s job so the others stay
    pending) and SIGKILLs it at the end."""
    assert configured_queues() == {}
    RecordingJobFactory(sleep_seconds=60, enqueue=True)
    RecordingJobFactory.create_batch(2, enqueue=True)

    body = get_health(client, 503)
    assert [(p["severity"], p["code"], p["queue"]) for p in body["problems"]] == [
        ("critical", "no_worker", "default"),
        ("warning", "no_worker", "average_slow"),
        ("warning", "no_worker", "urgent"),
    ]
    unserved = f"queue default: no live worker serves it, and 3 jobs are runnable now; {START}"
    assert body["problems"][0]["reason"] == unserved
    nagios = manage("jobs", "health")
    assert nagios.returncode == 2, nagios.stderr
    assert nagios.stdout.splitlines()[:2] == [
        f"JOBS CRITICAL - {unserved} (+2 more)",
        f"CRITICAL no_worker: {unserved}",
    ]

    worker = start_manage("runjobs", "--threads", "1", "--interval", "0.1")
    try:
        wait_for(lambda: RecordingJob.objects.filter(state=JobState.RUNNING).exists())
        assert RecordingJob.objects.filter(state=JobState.PENDING).count() == 2
        assert get_health(client, 200)["problems"] == []
        nagios = manage("jobs", "health")
        assert (nagios.returncode, nagios.stdout) == (0, "JOBS OK - no problems\n")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)


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


def test_a_queue_whose_sla_is_none_is_never_over_it(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": None}}
    urgent.now = NOON - timedelta(days=1)
    UrgentJobFactory(enqueue=True)
    urgent.now = NOON
    assert problems() == []


def test_a_queue_jobs_queues_does_not_name_is_held_to_the_default_sla(frozen):
    worker_row("w:1")
    frozen.now = NOON - DEFAULT_SLA - SECOND
    RecordingJobFactory(enqueue=True, enqueue__queue="mail")  # no model's default either
    assert problems(NOON - SECOND) == []
    assert problems(NOON) == [
        (
            "critical",
            "over_sla",
            "mail",
            "queue mail: oldest job has waited 10m1s, over the default SLA of 10m "
            "(JOBS_QUEUES can set another)",
        )
    ]


def test_a_queue_named_without_an_sla_is_held_to_the_default_too(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"probe": False}}
    urgent.now = NOON - DEFAULT_SLA - SECOND
    UrgentJobFactory(enqueue=True)
    assert problems(NOON - SECOND) == []
    assert problems(NOON) == [
        (
            "critical",
            "over_sla",
            "urgent",
            "queue urgent: oldest job has waited 10m1s, over its SLA of 10m",
        )
    ]


def test_a_probed_queue_over_its_sla_by_its_live_latency(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s", "probe": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    probe(urgent, due=NOON - MINUTE, started=NOON - 15 * SECOND)
    assert problems() == [
        (
            "critical",
            "over_sla",
            "urgent",
            "queue urgent: live latency (probe) is 45s, over its SLA of 30s",
        )
    ]
    probe(urgent, due=NOON - 10 * SECOND, started=NOON - 5 * SECOND)
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
        else [
            ("critical", "no_worker", "urgent", f"queue urgent: no live worker serves it; {START}")
        ]
    )
    assert problems(queue="urgent") == expected


def test_a_supervisor_runs_no_jobs_itself_so_it_serves_no_queue(settings, frozen):
    settings.JOBS_QUEUES = {"urgent": {}}
    supervisor = worker_row("s:1")
    worker_row("w:2", supervisor=supervisor, heartbeat_ago=5 * MINUTE)
    assert codes(queue="urgent") == ["no_worker"]
    worker_row("w:3", supervisor=supervisor)
    assert codes() == []


def test_with_no_jobs_queues_the_default_queues_are_watched_and_an_idle_one_only_warns(
    client, frozen
):
    worker_row("w:1", queues="average_slow,urgent")
    assert problems() == [
        (
            "warning",
            "no_worker",
            "default",
            "queue default: no live worker serves it: jobs enqueued on it by default wait "
            f"until one does; {START}",
        )
    ]
    assert get_health(client, 200)["status"] == "warning"


def test_runnable_jobs_on_a_queue_no_worker_serves_are_critical_whatever_queue_they_are_on(
    client, frozen
):
    worker_row("w:1")
    InstanceProvisionFactory(enqueue=True, enqueue__queue="eu")
    assert problems() == []
    Worker.objects.update(queues=",".join(DEFAULT_QUEUES))
    assert problems() == [
        (
            "critical",
            "no_worker",
            "eu",
            f"queue eu: no live worker serves it, and 1 job is runnable now; {START}",
        )
    ]
    assert get_health(client, 503)["status"] == "critical"


@pytest.mark.parametrize(
    ("state", "what"),
    [
        ("scheduled", "2 jobs are due later"),
        ("running", "2 jobs are still marked running"),
    ],
)
def test_jobs_due_later_or_still_running_on_a_queue_no_worker_serves_are_a_warning(
    frozen, state, what
):
    worker_row("w:1", queues=",".join(DEFAULT_QUEUES))
    for _ in range(2):
        job = RecordingJobFactory(enqueue=True, enqueue__queue="eu", enqueue__delay=60)
        if state == "running":
            RecordingJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    assert problems() == [
        ("warning", "no_worker", "eu", f"queue eu: no live worker serves it, and {what}; {START}")
    ]


def test_a_queue_known_only_from_jobs_that_ended_needs_no_worker_but_its_failures_count(frozen):
    worker_row("w:1", queues=",".join(DEFAULT_QUEUES))
    ended(frozen, 10, fail=False, queue="eu")
    assert problems() == []
    ended(frozen, 11, fail=True, queue="eu")
    assert codes() == ["failure_rate"]


def test_jobs_of_a_model_no_worker_claims_from_make_no_queue_to_watch(frozen):
    worker_row("w:1", queues=",".join(DEFAULT_QUEUES))
    LatencyProbe(queue="beats").enqueue()  # no queue asks for probes: nobody claims them
    assert LatencyProbe not in served_models()
    assert problems() == []


# LatencyProbe stale


def test_a_probed_queue_whose_probe_never_ran_is_stale(urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"probe": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    assert problems() == [
        (
            "critical",
            "probe_stale",
            "urgent",
            "queue urgent: no latency probe has started yet (stale after 3m)",
        )
    ]


def test_a_probed_queue_is_stale_when_no_probe_started_in_three_minutes_and_none_waits_less(
    urgent, settings
):
    settings.JOBS_QUEUES = {"urgent": {"probe": True}}
    worker_row("w:2", clock_ticked_at=NOON)
    probe(urgent, due=NOON - 4 * MINUTE, started=NOON - 3 * MINUTE)
    assert problems() == []
    probe(urgent, due=NOON - MINUTE, started=None)  # enqueued, waiting 1m30s: slow, alive
    assert problems(NOON + 30 * SECOND) == []
    probe(urgent, due=NOON - 3 * MINUTE, started=None)  # waiting 3m30s: nobody takes them
    assert problems(NOON + 30 * SECOND) == [
        (
            "critical",
            "probe_stale",
            "urgent",
            "queue urgent: no latency probe has started for 3m30s (stale after 3m)",
        )
    ]


def test_a_queue_without_probes_is_never_stale(urgent):
    assert LatencyProbe.objects.count() == 0
    assert problems() == []


# The clock


def test_without_schedules_or_probes_no_clock_is_needed(urgent, settings):
    settings.JOBS_SCHEDULE = {}
    assert problems() == []


@pytest.mark.parametrize("config", ["schedule", "probe"])
def test_schedules_or_probes_need_a_running_worker_that_runs_the_clock(urgent, settings, config):
    if config == "schedule":
        settings.JOBS_SCHEDULE = SCHEDULE
    else:
        settings.JOBS_QUEUES = {"urgent": {"probe": True}}
        probe(urgent, due=NOON, started=NOON)
    worker_row("w:2", clock_ticked_at=NOON, state=Worker.State.STOPPED)
    assert problems() == [
        (
            "critical",
            "clock_stopped",
            None,
            "no running worker runs the clock: schedules and probes are not enqueued",
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
            "schedules and probes are not enqueued",
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
    Worker.objects.filter(name="w:1").update(queues="mail,average_slow")
    ended(urgent, 10, fail=True, queue="mail")
    body = get_health(client, 503)
    assert body["status"] == "critical"
    assert [(p["severity"], p["code"], p["queue"]) for p in body["problems"]] == [
        ("critical", "no_worker", "urgent"),
        ("warning", "failure_rate", "mail"),
        ("warning", "no_worker", "default"),
    ]


def test_the_example_project_promises_an_sla_on_the_queue_provisions_use(settings):
    settings.JOBS_QUEUES = project_settings.JOBS_QUEUES
    queue = configured_queues()[InstanceProvision._meta.get_field("queue").default]
    assert queue.sla == timedelta(minutes=10)
    assert queue.probe


# Safe to expose


def test_the_json_holds_no_job_data(client, urgent, settings):
    settings.JOBS_QUEUES = {"urgent": {"sla": "30s", "probe": True}, "mail": {}}
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
        "probe_stale",
        "clock_stopped",
        "failure_rate",
    }
    assert set(body) == {"status", "problems", "checked_at"}
    for problem in body["problems"]:
        assert set(problem) == {"severity", "code", "queue", "reason"}
        assert problem["queue"] in {"urgent", "mail", "average_slow", "default", None}
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
        "urgent": {"sla": "30s", "probe": True},
        "average_slow": {"sla": "10m"},
        "mail": {},
    }
    worker_row("w:2", clock_ticked_at=NOON)
    # One grouped query per served job model (latency probes too, as a queue asks for them),
    # one for the workers, one for the clock (there are schedules: the probes), two for
    # the one probed queue, one for the paused queues.
    expected = len(served_models()) + 1 + 1 + 2 + 1

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
        ended(urgent, 10, fail=True, queue=f"other-{ago}", ago=ago * MINUTE)
        probe(urgent, due=NOON - ago * MINUTE, started=NOON - ago * MINUTE)
    assert set(codes()) == {"over_sla", "failure_rate"}
    assert {"other-1", "other-2", "other-3"} <= {p[2] for p in problems()}
    assert queries() == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's EXPLAIN")
def test_the_queue_query_reads_only_what_the_partial_indexes_cover(frozen):
    """With sequential scans priced out, the plan shows the query *can* use the indexes."""
    rows = health._queue_rows(InstanceProvision, NOON)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = rows.explain()
    assert "Seq Scan" not in plan, plan
    for index in ("_run", "_fin"):
        assert re.search(rf"Index Scan on \w+{index}\b", plan), plan
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
        "JOBS CRITICAL - queue urgent: oldest job has waited 1m, over its SLA of 30s (+4 more)",
        "CRITICAL over_sla: queue urgent: oldest job has waited 1m, over its SLA of 30s",
        f"CRITICAL no_worker: queue mail: no live worker serves it; {START}",
        "WARNING failure_rate: queue urgent: 10 of 10 jobs that ended in the last hour failed "
        "(100%), over its limit of 50%",
        "WARNING no_worker: queue average_slow: no live worker serves it: jobs enqueued on it "
        f"by default wait until one does; {START}",
        "WARNING no_worker: queue default: no live worker serves it: jobs enqueued on it "
        f"by default wait until one does; {START}",
    ]


def test_command_json_prints_what_the_view_answers(client, urgent):
    ended(urgent, 10, fail=True)
    code, output = run_command("health", "--json")
    assert code == 1
    assert json.loads(output) == get_health(client, 200)


def test_command_as_a_real_process_warns_that_no_worker_serves_the_default_queues():
    result = manage("jobs", "health")  # the test settings name no queue; no worker runs
    assert result.returncode == 1, result.stderr
    idle = f"no live worker serves it: jobs enqueued on it by default wait until one does; {START}"
    assert result.stdout.splitlines() == [
        f"JOBS WARNING - queue average_slow: {idle} (+2 more)",
        *(f"WARNING no_worker: queue {queue}: {idle}" for queue in DEFAULT_QUEUES),
    ]


def test_command_with_the_database_unreachable_exits_3_without_a_traceback():
    result = manage("jobs", "health", DATABASE_URL="postgres://nobody@127.0.0.1:1/none")
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("JOBS UNKNOWN - cannot read the job tables: ")
    assert "Connection refused" in result.stdout
    assert "Traceback" not in result.stderr


def test_command_without_a_subcommand_says_which_exist():
    result = manage("jobs")
    assert result.returncode == 2
    assert "say which subcommand to run" in result.stderr
    assert "  health " in result.stderr
    assert "health" in manage("jobs", "--help").stdout
