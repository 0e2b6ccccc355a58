"""`manage.py jobs enqueue|list|retry|cancel|status`: typed input, filters, and refusals.

Most tests call the command in this process (`call_command`, on the frozen clock); each
family also runs once as a real `manage.py` process, and every bad input is refused by a
real process with one line on stderr, exit status 2, and no row written.
"""

import io
import json
import re
import signal
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from jobs import execution
from jobs.management.commands.jobs import SUBCOMMANDS
from jobs.models import JobState
from project.instances.models import InstanceProvision
from tests.admin.test_dashboard import worker_row
from tests.conftest import NOON, manage, start_manage
from tests.factories import InstanceFactory, RecordingJobFactory, StepJobFactory, UrgentJobFactory
from tests.management.test_commands import assert_one_line_error
from tests.testapp.models import Effect, RecordingJob, StepJob, UrgentJob

JOB_MODELS = (RecordingJob, UrgentJob, StepJob, InstanceProvision)
SECOND = timedelta(seconds=1)
BOOM = "tests.testapp.models.Boom"
RETRYING = '{"fail": true, "max_attempts": 2}'
PROVISION = "instances.InstanceProvision"
CANCEL_APPLIES = "cancel applies to new, pending, running, waiting jobs"


def jobs(*args: str) -> tuple[int, str]:
    """`manage.py jobs ARGS` in this process: exit status and stdout.

    A refusal raises CommandError, as `call_command` always does; tests of refusals run a
    real process instead, to see the exit status and stderr an operator sees.
    """
    out = io.StringIO()
    try:
        call_command("jobs", *args, stdout=out)
    except SystemExit as exit:
        return exit.code, out.getvalue()
    return 0, out.getvalue()


def every_row() -> dict[str, list[dict]]:
    """All job rows, every column: what a refused command must leave exactly as it was."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model in JOB_MODELS}


# enqueue


@pytest.mark.django_db
def test_enqueue_types_each_field_through_the_model(frozen):
    code, out = jobs(
        "enqueue",
        "testapp.RecordingJob",
        "--field",
        "label_text=nightly",
        "--field",
        "sleep_seconds=1.5",
        "--field",
        "fail=True",
    )
    job = RecordingJob.objects.get()
    assert code == 0
    assert out == f"enqueued {job.label} on queue default, to run at 2026-11-22 12:00:00\n"
    assert (job.label_text, job.sleep_seconds, job.fail) == ("nightly", 1.5, True)
    assert (job.state, job.requested_at, job.run_at) == (JobState.PENDING, NOON, NOON)


@pytest.mark.django_db
def test_enqueue_takes_a_foreign_key_as_the_related_rows_primary_key():
    instance = InstanceFactory()
    jobs("enqueue", "instances.InstanceProvision", "--field", f"instance={instance.pk}")
    provision = InstanceProvision.objects.get()
    assert (provision.instance, provision.state) == (instance, JobState.PENDING)
    assert provision.queue == "average_slow"  # the model's default


@pytest.mark.django_db
def test_enqueue_reads_fields_from_json_on_the_command_line_or_stdin(monkeypatch):
    jobs("enqueue", "testapp.StepJob", "--json", '{"steps": 7}', "--field", "api_token=t")
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"steps": 9, "fail_at": null}'))
    jobs("enqueue", "testapp.StepJob", "--json", "-")
    rows = StepJob.objects.order_by("pk").values_list("steps", "fail_at", "api_token")
    assert list(rows) == [(7, None, "t"), (9, None, "")]


@pytest.mark.django_db
def test_enqueue_overrides_queue_and_priority_and_schedules_by_delay_or_time(frozen):
    jobs("enqueue", "testapp.UrgentJob", "--queue", "mail", "--priority", "-5", "--delay", "90")
    jobs("enqueue", "testapp.UrgentJob", "--run-at", "2026-11-23T08:30:00+01:00")
    delayed, timed = UrgentJob.objects.order_by("pk")
    assert (delayed.queue, delayed.priority, delayed.run_at) == ("mail", -5, NOON + 90 * SECOND)
    assert (timed.queue, timed.priority) == ("urgent", 10)
    assert timed.run_at.isoformat() == "2026-11-23T07:30:00+00:00"


@pytest.mark.django_db
def test_enqueue_with_json_output_prints_the_row_for_scripts(frozen):
    code, out = jobs("enqueue", "testapp.RecordingJob", "--output", "json")
    job = RecordingJob.objects.get()
    assert code == 0
    assert json.loads(out) == {
        "job": job.label,
        "model": "testapp.RecordingJob",
        "id": job.pk,
        "state": "pending",
        "queue": "default",
        "priority": 0,
        "attempts": 0,
        "max_attempts": 1,
        "run_at": "2026-11-22T12:00:00+00:00",
        "error_type": "",
        "error_message": "",
    }


@pytest.mark.django_db(transaction=True)
def test_enqueue_run_performs_the_job_here_and_exits_1_unless_it_succeeded():
    code, out = jobs("enqueue", "testapp.RecordingJob", "--run")
    job = RecordingJob.objects.get()
    assert (code, out) == (0, f"{job.label} succeeded\n")
    assert Effect.objects.filter(job_id=job.pk).count() == 1

    code, out = jobs("enqueue", "testapp.RecordingJob", "--field", "fail=True", "--run")
    failed = RecordingJob.objects.latest("pk")
    assert code == 1
    assert out == f"{failed.label} failed: tests.testapp.models.Boom: boom in {failed.pk}\n"
    assert failed.state == JobState.FAILED

    code, out = jobs("enqueue", "testapp.RecordingJob", "--json", RETRYING, "--run")
    retrying = RecordingJob.objects.latest("pk")
    assert (code, retrying.state) == (1, JobState.PENDING)
    assert out.startswith(f"{retrying.label} failed ({BOOM}: boom in {retrying.pk}); will retry")


@pytest.mark.django_db(transaction=True)
def test_enqueue_as_a_real_process_commits_the_job_for_a_worker():
    result = manage("jobs", "enqueue", "testapp.RecordingJob", "--field", "label_text=cli")
    assert result.returncode == 0, result.stderr
    job = RecordingJob.objects.get()
    assert result.stdout.startswith(f"enqueued {job.label} on queue default")
    assert manage("runjobs", "--burst").returncode == 0
    assert RecordingJob.objects.get().state == JobState.SUCCEEDED


# Each bad input: one line on stderr, exit 2, nothing written


@pytest.fixture
def rows_to_keep():
    """A few rows of each kind; a refused command must leave every column as it was."""
    InstanceFactory(name="web-1")
    RecordingJobFactory(enqueue=True)
    RecordingJobFactory(fail=True, enqueue=True).run()
    StepJobFactory()
    before = every_row()
    yield
    assert every_row() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "testapp.Nothing"], "'testapp.Nothing' is not a job model; the job models"),
        (["enqueue", "testapp.Effect"], "'testapp.Effect' is not a job model"),
        (
            ["enqueue", "testapp.RecordingJob", "--field", "colour=red"],
            "invalid testapp.RecordingJob: no field 'colour' to set; its fields are queue,",
        ),
        (
            ["enqueue", "testapp.RecordingJob", "--field", "sleep_seconds=soon"],
            "invalid testapp.RecordingJob: sleep_seconds: “soon” value must be a float.",
        ),
        (
            ["enqueue", "instances.InstanceProvision"],
            "invalid instances.InstanceProvision: instance: This field cannot be null.",
        ),
        (["enqueue", "testapp.StepJob", "--json", '{"steps": 3'], "--json: not valid JSON"),
        (["list", "--state", "stuck"], "invalid choice: 'stuck'"),
        (["retry"], "say which jobs to retry (--model, --state, "),
        (["cancel"], "or give --all to cancel every job"),
        (["cancel", "--queue", "defualt"], "no job uses queue 'defualt'"),
        (["move", "--queue", "default"], "say where to: --to-queue, --to-priority, or both"),
        (["move", "--to-queue", "big"], "say which jobs to move (--model, --state, "),
        (["move", "--all", "--to-queue", "no spaces"], "queue name 'no spaces' is invalid"),
        (["move", "--all", "--to-priority", "500"], "priority 500 is out of range"),
        (["move", "--state", "failed", "--to-queue", "big"], "move applies to pending, waiting"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(rows_to_keep, args, fragment):
    assert_one_line_error(manage("jobs", *args), 2, fragment)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("model", "args", "reason"),
    [
        (PROVISION, ["--field", "instance=abc"], "instance: “abc” value must be an integer."),
        (PROVISION, ["--field", "instance=424242"], "instance: no Instance with id 424242"),
        (PROVISION, ["--json", '{"instance": 424242}'], "instance: no Instance with id 424242"),
        (
            PROVISION,
            ["--field", "size=large"],
            "no field 'size' to set; its fields are queue, priority, max_attempts, timeout, "
            "instance",
        ),
        (
            PROVISION,
            ["--field", "instance=1", "--json", '{"instance": 1}'],
            "instance given both by --field and by --json",
        ),
        (
            "testapp.StepJob",
            ["--field", "priority=1000"],
            "priority 1000 is out of range: use -100 to 100 (higher runs first)",
        ),
        (
            "testapp.StepJob",
            ["--json", '{"max_attempts": 0}'],
            "max_attempts must be an integer of at least 1, got 0",
        ),
    ],
)
def test_every_refused_enqueue_is_one_line_that_starts_invalid_and_the_model(
    rows_to_keep, model, args, reason
):
    """The same prefix for a bad field name, value, related row or row option, so every
    refusal reads alike; the missing row is named once, not "instance instance"."""
    result = manage("jobs", "enqueue", model, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"CommandError: invalid {model}: {reason}"]


@pytest.mark.django_db
def test_a_foreign_key_limited_by_limit_choices_to_says_so(monkeypatch):
    instance = InstanceFactory(name="web-1")
    field = InstanceProvision._meta.get_field("instance")
    monkeypatch.setattr(field.remote_field, "limit_choices_to", {"name": "db-1"})
    with pytest.raises(CommandError) as refused:
        jobs("enqueue", "instances.InstanceProvision", "--field", f"instance={instance.pk}")
    assert str(refused.value) == (
        "invalid instances.InstanceProvision: instance: "
        f"no Instance with id {instance.pk} that its limit_choices_to allows"
    )
    assert not InstanceProvision.objects.exists()


def test_jobs_alone_lists_its_subcommands_one_line_each_and_exits_2():
    result = manage("jobs")
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: manage.py jobs ")
    error = lines.index(
        "manage.py jobs: error: say which subcommand to run "
        "(manage.py jobs SUBCOMMAND --help shows its options):"
    )
    listed = [line.split(maxsplit=1) for line in lines[error + 1 :]]
    assert listed == [[name, command.help] for name, command in SUBCOMMANDS.items()]
    assert all(len(line) <= 80 for line in lines[error + 1 :])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "nonsense"], "'nonsense' is not a job model"),
        (
            ["enqueue", "testapp.RecordingJob", "--field", "state=succeeded"],
            "invalid testapp.RecordingJob: no field 'state'",
        ),
        (
            ["enqueue", "testapp.RecordingJob", "--field", "behaviour=dance"],
            "invalid testapp.RecordingJob: behaviour: Value 'dance' is not a valid choice.",
        ),
        (["enqueue", "testapp.RecordingJob", "--field", "fail"], "'fail' is not NAME=VALUE"),
        (
            ["enqueue", "instances.InstanceProvision", "--field", "instance=web-1"],
            "invalid instances.InstanceProvision: instance: “web-1” value must be an integer.",
        ),
        (["enqueue", "testapp.StepJob", "--json", "[3]"], "must be an object of field names"),
        (
            ["enqueue", "testapp.StepJob", "--json", '{"steps": 3}', "--field", "steps=4"],
            "invalid testapp.StepJob: steps given both by --field and by --json",
        ),
        (
            ["enqueue", "testapp.StepJob", "--field", "queue=two words"],
            "invalid testapp.StepJob: queue name 'two words' is invalid",
        ),
        (["enqueue", "testapp.StepJob", "--priority", "500"], "priority 500 is out of range"),
        (["enqueue", "testapp.StepJob", "--queue", "two words"], "is invalid"),
        (["enqueue", "testapp.StepJob", "--run-at", "tomorrow"], "'tomorrow' is not an ISO"),
        (["enqueue", "testapp.StepJob", "--delay", "5", "--run"], "not allowed with argument"),
        (["list", "--model", "auth.User"], "'auth.User' is not a job model"),
        (["list", "--queue", "nosuchqueue"], "no job uses queue 'nosuchqueue'"),
        (["list", "--id", "1"], "--id needs exactly one --model"),
        (["retry", "--state", "succeeded"], "retry applies to cancelled, failed, pending jobs"),
        (["cancel", "--state", "failed"], CANCEL_APPLIES),
        (["cancel", "--failed-since", "1h"], CANCEL_APPLIES),
        (["cancel", "--model", "testapp.Nope"], "'testapp.Nope' is not a job model"),
        (["cancel", "--older-than", "soon"], "write a duration such as '30s'"),
        (["status", "--watch", "0"], "'0' is not a number of seconds greater than 0"),
    ],
)
def test_more_bad_input_is_refused_with_one_line_and_changes_nothing(rows_to_keep, args, fragment):
    with pytest.raises(CommandError) as refused:
        call_command("jobs", *args, stdout=io.StringIO())
    assert fragment in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_unreachable_database_is_one_line_and_exit_1():
    result = manage("jobs", "list", DATABASE_URL="postgres://postgres@127.0.0.1:1/nothing")
    assert_one_line_error(result, 1, "cannot reach the database: connection failed")


# list


@pytest.fixture
def scene(frozen):
    """Rows of three models in every state that matters, on the frozen clock."""
    frozen.now = NOON - timedelta(hours=2)
    old_failure = RecordingJobFactory(fail=True, label_text="old", enqueue=True).run()
    frozen.now = NOON - timedelta(minutes=5)
    failure = RecordingJobFactory(fail=True, label_text="new", enqueue=True).run()
    frozen.now = NOON
    return {
        "old_failure": old_failure,
        "failure": failure,
        "pending": RecordingJobFactory(enqueue=True),
        "scheduled": RecordingJobFactory(enqueue=True, enqueue__delay=3600),
        "urgent": UrgentJobFactory(enqueue=True),
        "mail": UrgentJobFactory(enqueue=True, enqueue__queue="mail"),
        "running": StepJobFactory(enqueue=True),
        "new": StepJobFactory(),
    }


def claim(job):
    execution.claim_for_run(job)
    return job


@pytest.mark.django_db
def test_list_shows_a_table_of_the_matching_rows_latest_run_first(scene):
    code, out = jobs("list", "--model", "testapp.RecordingJob")

    def cells(job, state: str, attempts: str, run_at: str, error: str = "") -> list[str]:
        return [
            str(job.pk),
            "testapp.RecordingJob",
            state,
            "default",
            attempts,
            *run_at.split(),
            *error.split(),
        ]

    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["ID", "MODEL", "STATE", "QUEUE", "ATTEMPTS", "RUN", "AT", "ERROR"],
        cells(scene["scheduled"], "pending", "0/1", "2026-11-22 13:00:00"),
        cells(scene["pending"], "pending", "0/1", "2026-11-22 12:00:00"),
        cells(scene["failure"], "failed", "1/1", "2026-11-22 11:55:00", "Boom: boom in new"),
        cells(scene["old_failure"], "failed", "1/1", "2026-11-22 10:00:00", "Boom: boom in old"),
    ]


@pytest.mark.django_db
def test_list_shows_why_a_failed_or_retrying_job_failed_but_not_a_succeeded_ones_past(frozen):
    failed = RecordingJobFactory(fail=True, enqueue=True).run()
    retrying = RecordingJobFactory(enqueue=True, fail=True, max_attempts=2).run()
    retried = RecordingJobFactory(enqueue=True, fail=True, max_attempts=2).run()
    RecordingJob.objects.filter(pk=retried.pk).update(fail=False, run_at=NOON)
    retried = RecordingJob.objects.get(pk=retried.pk).run()
    assert (retrying.state, retried.state, retried.error_type) == ("pending", "succeeded", "")
    assert [entry["type"] for entry in retried.error_history] == [BOOM]
    _, out = jobs("list")
    errors = {int(line.split()[0]): line.split(maxsplit=7)[7:] for line in out.splitlines()[1:]}
    assert errors == {
        failed.pk: [f"Boom: boom in {failed.label_text}"],
        retrying.pk: [f"Boom: boom in {retrying.label_text}"],
        retried.pk: [],
    }


@pytest.mark.django_db
def test_list_cuts_the_error_to_fit_the_terminal_line_and_json_keeps_it_whole(monkeypatch):
    message = "the provider refused: " + "quota exceeded " * 20
    job = RecordingJobFactory(fail=True, enqueue=True).run()
    RecordingJob.objects.filter(pk=job.pk).update(error_message=message)
    monkeypatch.setenv("COLUMNS", "120")
    _, out = jobs("list")
    header, row = out.splitlines()
    assert len(row) == 120
    # Where the cut falls depends on the id column's width (ids are not reset between tests).
    assert re.search(r"  Boom: the provider refused: quota exceeded [a-z ]*…$", row)
    assert header.endswith("ERROR")
    monkeypatch.setenv("COLUMNS", "40")  # too narrow for the row: the error keeps its type
    assert jobs("list")[1].splitlines()[1].endswith("  Boom: the provider refu…")
    monkeypatch.delenv("COLUMNS")
    assert jobs("list")[1].splitlines()[1].endswith(f"Boom: {' '.join(message.split())}")
    _, out = jobs("list", "--output", "json")
    assert json.loads(out)[0]["error_message"] == message


@pytest.mark.django_db
def test_list_filters_by_state_queue_id_and_age_across_models(scene):
    def listed(*args: str) -> set[str]:
        _, out = jobs("list", "--output", "json", *args)
        return {row["job"] for row in json.loads(out)}

    assert listed("--state", "failed") == {scene["failure"].label, scene["old_failure"].label}
    assert listed("--queue", "mail") == {scene["mail"].label}
    assert listed("--queue", "urgent") == {scene["urgent"].label}
    assert listed("--state", "new") == {scene["new"].label}
    assert listed("--failed-since", "1h") == {scene["failure"].label}
    assert listed("--older-than", "1h") == {scene["old_failure"].label}
    model, pk = "testapp.UrgentJob", str(scene["mail"].pk)
    assert listed("--model", model, "--id", pk) == {scene["mail"].label}


@pytest.mark.django_db
def test_list_says_when_its_limit_cut_rows_off(scene):
    _, out = jobs("list", "--limit", "2")
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[-1] == "(more rows match; showing the first 2, see --limit)"
    assert jobs("list", "--state", "cancelled") == (0, "no jobs match\n")


# retry and cancel


@pytest.mark.django_db
def test_retry_requeues_failed_rows_and_brings_scheduled_ones_forward(scene):
    code, out = jobs("retry", "--model", "testapp.RecordingJob")
    assert (code, out) == (0, "testapp.RecordingJob: 1 moved to now, 2 requeued\n")
    rows = RecordingJob.objects.all()
    assert {(row.state, row.run_at, row.attempts) for row in rows} == {(JobState.PENDING, NOON, 0)}


@pytest.mark.django_db
def test_retry_by_failure_age_leaves_older_failures_alone(scene):
    assert jobs("retry", "--failed-since", "1h") == (0, "testapp.RecordingJob: 1 requeued\n")
    assert RecordingJob.objects.get(pk=scene["old_failure"].pk).state == JobState.FAILED
    assert RecordingJob.objects.get(pk=scene["failure"].pk).state == JobState.PENDING


@pytest.mark.django_db
def test_dry_run_counts_per_model_and_changes_nothing(scene):
    claim(scene["running"])
    before = every_row()
    _, out = jobs("cancel", "--all", "--dry-run")
    assert out.splitlines() == [
        "testapp.RecordingJob: 2 would be cancelled",
        "testapp.StepJob: 1 would be cancelled, 1 would be asked to stop",
        "testapp.UrgentJob: 2 would be cancelled",
        "dry run: 6 job(s) would change; nothing was changed",
    ]
    _, out = jobs("retry", "--state", "failed", "--dry-run")
    assert out.splitlines()[0] == "testapp.RecordingJob: 2 would be requeued"
    assert every_row() == before


@pytest.mark.django_db
def test_cancel_stops_what_has_not_started_and_asks_running_jobs_to_stop(scene):
    running = claim(scene["running"])
    code, out = jobs("cancel", "--model", "testapp.StepJob")
    assert (code, out) == (0, "testapp.StepJob: 2 cancelled or asked to stop\n")
    assert StepJob.objects.get(pk=scene["new"].pk).state == JobState.CANCELLED
    asked = StepJob.objects.get(pk=running.pk)
    assert (asked.state, asked.cancel_requested_at) == (JobState.RUNNING, NOON)
    assert jobs("cancel", "--model", "testapp.StepJob") == (
        0,
        "no job matched that cancel applies to: nothing changed\n",
    )


@pytest.mark.django_db
def test_cancel_by_ids_of_one_model_touches_only_those_rows(scene):
    mail = scene["mail"]
    _, out = jobs("cancel", "--model", "testapp.UrgentJob", "--id", str(mail.pk))
    assert out == "testapp.UrgentJob: 1 cancelled or asked to stop\n"
    assert UrgentJob.objects.get(pk=mail.pk).state == JobState.CANCELLED
    assert UrgentJob.objects.get(pk=scene["urgent"].pk).state == JobState.PENDING


@pytest.mark.django_db
def test_move_sends_pending_jobs_to_another_queue_and_priority_and_leaves_the_rest(scene):
    running = claim(scene["running"])
    before = every_row()
    _, dry = jobs("move", "--model", "testapp.RecordingJob", "--to-queue", "big", "--dry-run")
    assert dry.splitlines() == [
        "testapp.RecordingJob: 2 would be moved",  # pending and scheduled; not the failures
        "dry run: 2 job(s) would change; nothing was changed",
    ]
    assert every_row() == before
    code, out = jobs("move", "--queue", "urgent", "--to-queue", "big", "--to-priority", "9")
    assert (code, out) == (0, "testapp.UrgentJob: 1 moved\n")
    moved = UrgentJob.objects.get(pk=scene["urgent"].pk)
    assert (moved.queue, moved.priority, moved.run_at) == ("big", 9, scene["urgent"].run_at)
    assert UrgentJob.objects.get(pk=scene["mail"].pk).queue == "mail"  # another queue
    assert jobs("move", "--model", "testapp.StepJob", "--to-queue", "big")[1] == (
        "no job matched that move applies to: nothing changed\n"  # running and new: not moved
    )
    assert StepJob.objects.get(pk=running.pk).queue == running.queue
    assert jobs("move", "--queue", "urgent", "--to-queue", "big") == (
        0,
        "no job matched that move applies to: nothing changed\n",
    )


@pytest.mark.django_db(transaction=True)
def test_retry_and_cancel_as_real_processes():
    failed = RecordingJobFactory(fail=True, enqueue=True).run()
    pending = UrgentJobFactory(enqueue=True)
    result = manage("jobs", "retry", "--state", "failed")
    assert (result.returncode, result.stdout) == (0, "testapp.RecordingJob: 1 requeued\n")
    result = manage("jobs", "cancel", "--queue", "urgent")
    assert (result.returncode, result.stdout) == (
        0,
        "testapp.UrgentJob: 1 cancelled or asked to stop\n",
    )
    assert RecordingJob.objects.get(pk=failed.pk).state == JobState.PENDING
    assert UrgentJob.objects.get(pk=pending.pk).state == JobState.CANCELLED


# status


@pytest.mark.django_db
def test_status_shows_each_queue_and_each_worker(scene):
    """StepJobs default to queue default too: its pending are a RecordingJob and a StepJob."""
    worker_row("web-1:100", queues="urgent,mail", threads=4, jobs_in_flight=[1, 2])
    worker_row("web-2:200", heartbeat_ago=timedelta(minutes=10))
    code, out = jobs("status")
    assert code == 0
    assert out.splitlines() == [
        "jobs at 2026-11-22 12:00:00",
        "",
        "QUEUE    PENDING  SCHEDULED  RUNNING  FAILED 1H  OLDEST WAIT",
        "default        2          1        0          1  0s",
        "mail           1          0        0          0  0s",
        "urgent         1          0        0          0  0s",
        "all            4          1        0          1  0s",
        "",
        "WORKER     QUEUES       THREADS BUSY  LAST HEARTBEAT",
        "web-1:100  urgent,mail  2/4           0s ago",
        "web-2:200  all          0/1           10m ago         STALE",
    ]


@pytest.mark.django_db(transaction=True)
def test_status_as_a_real_process_with_nothing_to_show():
    result = manage("jobs", "status")
    assert result.returncode == 0, result.stderr
    assert "no queue has jobs pending, running or failed in the last day" in result.stdout
    assert result.stdout.endswith("no worker is running\n")


@pytest.mark.django_db(transaction=True)
def test_watch_redraws_until_ctrl_c_then_exits_0_without_a_traceback():
    UrgentJobFactory(enqueue=True)
    watcher = start_manage("jobs", "status", "--watch", "0.2")
    try:
        time.sleep(3)  # Django's start-up, then a few redraws
        watcher.send_signal(signal.SIGINT)
        stdout, stderr = watcher.communicate(timeout=10)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.count("every 0.2s; Ctrl-C to stop") >= 2
    frames = [line.split()[:2] for line in stdout.splitlines() if line.startswith("urgent ")]
    assert len(frames) >= 2
    assert set(map(tuple, frames)) == {("urgent", "1")}
    assert "\x1b[2J" not in stdout  # not a terminal: no escape codes in a pipe
