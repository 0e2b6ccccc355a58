"""`@task` functions enqueued through the Tasks API and run by a real `runjobs` process,
which finds them by discovering installed apps' `tasks` modules."""

import pytest

from jobs.contrib.tasks.api import TaskResultStatus
from tests.conftest import manage
from tests.testapp import tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_process_runs_tasks_and_any_process_reads_their_results():
    results = [
        tasks.add.enqueue(20, 22),
        tasks.shout.using(priority=50).enqueue("go"),
        tasks.divide.enqueue(1, 0),
        tasks.where_am_i.enqueue("worker"),
        tasks.nap.enqueue(0),
    ]
    finished = manage("runjobs", "--burst", "--threads", "2")
    assert finished.returncode == 0, finished.stderr
    for result in results:
        result.refresh()
    assert [result.status for result in results] == [
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.FAILED,
        TaskResultStatus.SUCCESSFUL,
        TaskResultStatus.SUCCESSFUL,
    ]
    assert results[0].return_value == 42
    assert results[1].return_value == {"text": "GO", "parts": ["go"]}
    assert results[2].errors[0].exception_class is ZeroDivisionError
    assert results[3].return_value["attempt"] == 1
    assert results[4].return_value == "rested"
    assert all(result.worker_ids[0] for result in results)
