"""Django's Tasks API on this framework: `@task` functions run as `jobs_tasks.TaskJob` rows."""

import sys
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from jobs.contrib.tasks.api import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultMismatch,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from jobs.contrib.tasks.backend import DatabaseBackend
from jobs.contrib.tasks.calls import UnregisteredTask
from jobs.contrib.tasks.models import TaskJob
from jobs.identity import process_identity
from jobs.models import JobState
from jobs.runtime.worker import WorkerLoop
from jobs.testing import drain
from tests.conftest import NOON
from tests.testapp import tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db


def test_the_configured_backend_is_ours():
    assert isinstance(task_backends["default"], DatabaseBackend)


def test_enqueue_writes_a_pending_row_and_answers_a_ready_result():
    result = tasks.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert result.args == [2, 3]
    job = TaskJob.objects.get(pk=int(result.id))
    assert (job.state, job.task_path, job.args, job.kwargs) == (
        JobState.PENDING,
        "tests.testapp.tasks.add",
        [2, 3],
        {},
    )
    assert (job.queue, job.priority) == ("default", 0)
    assert not result.is_finished
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value


def test_a_worker_runs_it_and_the_result_says_how_it_went():
    result = tasks.shout.enqueue("hey", times=2)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"text": "HEYHEY", "parts": ["hey", "hey"]}
    assert result.attempts == 1
    assert result.worker_ids == [process_identity()]  # host:pid: drain() ran it here
    assert result.enqueued_at <= result.started_at <= result.finished_at
    fetched = tasks.shout.get_result(result.id)
    assert fetched.return_value == result.return_value
    assert TaskJob.objects.get(pk=int(result.id)).priority == 10  # the decorator's priority


def test_a_failing_task_reports_its_exception_class_and_traceback():
    result = tasks.divide.enqueue(1, 0)
    drain()
    result = task_backends["default"].get_result(result.id)
    assert result.status == TaskResultStatus.FAILED
    (error,) = result.errors
    assert error.exception_class is ZeroDivisionError
    assert "ZeroDivisionError: division by zero" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_a_task_that_returns_what_json_cannot_hold_fails_with_a_clear_error():
    result = tasks.unstorable.enqueue()
    drain()
    job = TaskJob.objects.get(pk=int(result.id))
    assert job.state == JobState.FAILED
    assert job.error_type == "TypeError"
    assert "the return value of tests.testapp.tasks.unstorable must be JSON" in job.error_message


def test_a_task_taking_context_gets_its_own_result_and_attempt():
    result = tasks.where_am_i.enqueue("here")
    drain()
    assert tasks.where_am_i.get_result(result.id).return_value == {"id": result.id, "attempt": 1}
    assert Effect.objects.get().worker == "here"


def test_an_async_task_runs_too():
    result = tasks.nap.enqueue(0.01)
    drain()
    assert task_backends["default"].get_result(result.id).return_value == "rested"


def test_using_sets_priority_queue_and_run_after(frozen):
    later = NOON + timedelta(hours=1)
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": "jobs.contrib.tasks.backend.DatabaseBackend",
                "QUEUES": ["default", "emails"],
            }
        }
    ):
        result = tasks.add.using(priority=-5, queue_name="emails", run_after=later).enqueue(1, 1)
    job = TaskJob.objects.get(pk=int(result.id))
    assert (job.priority, job.queue, job.run_at) == (-5, "emails", later)
    assert not TaskJob.objects.runnable().exists()


def test_a_result_read_back_keeps_what_using_set_and_equals_the_enqueued_one(frozen):
    """`get_result()` and `refresh()` rebuild the task as it was enqueued, not as decorated:
    its priority, queue, run_after and backend."""
    later = NOON + timedelta(hours=1)
    two = {
        "default": {"BACKEND": "jobs.contrib.tasks.backend.DatabaseBackend"},
        "other": {"BACKEND": "jobs.contrib.tasks.backend.DatabaseBackend", "QUEUES": ["slow"]},
    }
    with override_settings(TASKS=two):
        custom = tasks.add.using(priority=7, queue_name="slow", run_after=later, backend="other")
        result = custom.enqueue(2, 3)
        read = task_backends["other"].get_result(result.id)
        assert read == result
        assert read.task == custom
        assert (read.task.priority, read.task.queue_name) == (7, "slow")
        assert (read.task.run_after, read.task.backend) == (later, "other")
        assert custom.get_result(result.id) == result
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(result.id)  # another backend's row
        TaskJob.objects.filter(pk=int(result.id)).update(run_at=NOON)
        drain()
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == 5
        assert result.task == custom


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"queue_name": "elsewhere"}, "Queue 'elsewhere' is not valid for backend"),
        ({"priority": 101}, "priority must be a whole number between -100 and 100"),
        ({"run_after": NOON.replace(tzinfo=None)}, "run_after must be an aware datetime"),
    ],
)
def test_what_the_api_forbids_is_refused_with_its_own_error(variant, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**variant).enqueue(1, 2)
    assert not TaskJob.objects.exists()


def test_a_function_defined_inside_another_cannot_be_a_task():
    def local(): ...

    with pytest.raises(InvalidTask, match="module level"):
        task()(local)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(),), {}, "the arguments of tests.testapp.tasks.add must be JSON"),
        ((NOON, 1), {}, "Object of type datetime is not JSON serializable"),
        (({1, 2}, 1), {}, "Object of type set is not JSON serializable"),
        ((float("nan"), 1), {}, "must be JSON"),
        (({1: "one"}, 1), {}, "would not survive JSON unchanged"),
        ((1,), {"b": b"bytes"}, "the keyword arguments of tests.testapp.tasks.add must be JSON"),
    ],
)
def test_arguments_that_are_not_json_fail_at_enqueue_and_nothing_is_enqueued(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        tasks.add.enqueue(*args, **kwargs)
    assert not TaskJob.objects.exists()


def test_tuples_come_back_as_lists():
    assert tasks.add.enqueue((1, 2), (3,)).args == [[1, 2], [3]]


def test_a_row_naming_an_unregistered_path_is_refused_and_never_imported():
    forged = TaskJob(task_path="tests.testapp.import_bomb.run", args=[]).enqueue()
    drain()
    forged.refresh_from_db()
    assert forged.state == JobState.FAILED
    assert forged.error_type == "jobs.contrib.tasks.calls.UnregisteredTask"
    assert "is not a registered task, so it is not run" in forged.error_message
    assert "tests.testapp.import_bomb" not in sys.modules
    with pytest.raises(UnregisteredTask):
        task_backends["default"].get_result(str(forged.pk))


def test_enqueue_commits_or_rolls_back_with_the_callers_transaction():
    def failing_view():
        with transaction.atomic():
            tasks.add.enqueue(1, 2)
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        failing_view()
    assert not TaskJob.objects.exists()


@pytest.mark.parametrize("result_id", ["999999", "not-a-number", ""])
def test_an_unknown_result_id_is_the_apis_does_not_exist(result_id):
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(result_id)


def test_a_result_asked_of_the_wrong_task_is_a_mismatch():
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(TaskResultMismatch):
        tasks.shout.get_result(result.id)


def test_the_apis_signals_fire_around_the_run():
    heard = []

    def listen(sender, task_result, signal, **kwargs):
        heard.append((signal, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(listen)
    try:
        tasks.add.enqueue(1, 2)
        drain()
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(listen)
    assert heard == [
        (task_enqueued, TaskResultStatus.READY),
        (task_started, TaskResultStatus.RUNNING),
        (task_finished, TaskResultStatus.SUCCESSFUL),
    ]


def test_unknown_backend_options_fail_the_check():
    backend = DatabaseBackend("other", {"OPTIONS": {"MODULES": ["no.such.module"], "X": 1}})
    messages = [message.msg for message in backend.check()]
    assert "has unknown option(s) X" in messages[0]
    assert "lists 'no.such.module', which cannot be imported" in messages[1]


def test_tasks_show_in_the_admin(admin_client):
    result = tasks.add.enqueue(4, 5)
    response = admin_client.get(f"/admin/jobs_tasks/taskjob/{result.id}/change/")
    assert response.status_code == 200
    assert b"tests.testapp.tasks.add" in response.content


def test_enqueue_on_commit_is_what_this_backend_always_does_and_false_is_refused():
    assert list(DatabaseBackend("on", {"ENQUEUE_ON_COMMIT": True}).check()) == []
    (error,) = DatabaseBackend("off", {"ENQUEUE_ON_COMMIT": False}).check()
    assert "TASKS['off']['ENQUEUE_ON_COMMIT'] is False" in error.msg
    assert "writes each task in the caller's transaction" in error.msg


# Tasks a worker runs for `test_a_worker_runs_a_task_in_a_few_statements`: enough that the
# worker's fixed costs (registering, heartbeats, the final flush) weigh little per task.
COUNTED_TASKS = 200


@pytest.mark.skipif(
    connection.vendor == "postgresql",
    reason="the hot path's prepared statements bypass Django's cursor there, uncounted",
)
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_a_task_in_a_few_statements(monkeypatch):
    """What one task costs a worker, every statement of every thread counted: its share of
    the claims and of the outcome batches (which carry the return value), each taking many
    rows at once where the worker has them; django-tasks-db's worker sends about 8 per
    task, one row at a time."""
    results = [tasks.add.enqueue(n, n) for n in range(COUNTED_TASKS)]
    sent = []
    execute = CursorWrapper._execute

    def counted(self, sql, *args):
        sent.append(sql)
        return execute(self, sql, *args)

    monkeypatch.setattr(CursorWrapper, "_execute", counted)
    WorkerLoop(models=[TaskJob], threads=4, burst=True).run()
    monkeypatch.undo()
    for result in results:
        result.refresh()
    assert {result.status for result in results} == {TaskResultStatus.SUCCESSFUL}
    statements = [sql for sql in sent if sql not in ("BEGIN", "COMMIT", "ROLLBACK")]
    per_task = len(statements) / COUNTED_TASKS
    print(f"{per_task:.2f} statements per task ({len(statements)} for {COUNTED_TASKS})")
    assert per_task < 2.5  # measured 1.5 on SQLite, 2.0 on MariaDB
