"""`manage.py runjobs` as a real process: options, bad input, signals."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jobs.models import JobState
from tests.conftest import REPO, manage, start_manage, wait_for
from tests.factories import RecordingJobFactory
from tests.testapp.models import Effect, RecordingJob

pytestmark = pytest.mark.django_db(transaction=True)


def assert_one_line_error(result, exit_code: int, fragment: str) -> None:
    """A clear message on the last line of stderr, a non-zero exit, and no traceback."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr.strip().splitlines()[-1]


def test_burst_drains_the_queue_logs_each_job_and_exits_zero():
    jobs = [RecordingJobFactory(enqueue=True) for _ in range(3)]
    result = manage("runjobs", "--burst")
    assert result.returncode == 0, result.stderr
    for job in jobs:
        assert f"testapp.RecordingJob#{job.pk} started" in result.stderr
        assert f"testapp.RecordingJob#{job.pk} succeeded in" in result.stderr
    assert Effect.objects.count() == 3


def test_queues_option_limits_what_is_run():
    wanted = RecordingJobFactory(enqueue=True, enqueue__queue="mail")
    other = RecordingJobFactory(enqueue=True)
    result = manage("runjobs", "--burst", "--queues", "mail")
    assert result.returncode == 0, result.stderr
    assert RecordingJob.objects.get(pk=wanted.pk).state == JobState.SUCCEEDED
    assert RecordingJob.objects.get(pk=other.pk).state == JobState.PENDING


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--queues", ""], "names no queue"),
        (["--queues", ",,"], "names no queue"),
        (["--queues", "a,,b"], "empty queue name"),
        (["--queues", "a,a"], "lists a more than once"),
        (["--queues", "no spaces"], "is invalid"),
        (["--interval", "soon"], "'soon' is not a number of seconds greater than 0"),
        (["--interval", "-1"], "is not a number of seconds greater than 0"),
        (["--interval", "nan"], "is not a number of seconds greater than 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_fail_with_one_clear_line_and_run_nothing(args, fragment):
    RecordingJobFactory(enqueue=True)
    assert_one_line_error(manage("runjobs", "--burst", *args), 2, fragment)
    assert not Effect.objects.exists()


def test_a_queue_no_job_model_uses_is_a_warning_not_an_error():
    result = manage("runjobs", "--burst", "--queues", "default,nosuchqueue")
    assert result.returncode == 0, result.stderr
    assert "warning: no job model defaults to queue 'nosuchqueue'" in result.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("foo://bar/db", "is not a database URL this project supports"),
        ("garbage", "is not a database URL this project supports"),
        ("postgres://user@host:notaport/db", "is malformed"),
        ("postgres://user@host:5432", "names no database"),
    ],
)
def test_malformed_database_url_is_one_line_of_configuration_error(url, fragment):
    result = manage("runjobs", "--burst", DATABASE_URL=url)
    assert_one_line_error(result, 1, fragment)
    assert result.stderr.startswith("configuration error: DATABASE_URL")


@pytest.mark.parametrize("size", ["lots", "0", "-3"])
def test_a_bad_pool_size_is_one_line_of_configuration_error(size):
    result = manage("runjobs", "--burst", DATABASE_URL="postgres://u@h/db", DATABASE_POOL_SIZE=size)
    assert_one_line_error(result, 1, "is not a number of connections (1 or more)")
    assert result.stderr.startswith(f"configuration error: DATABASE_POOL_SIZE '{size}'")


def test_worker_on_an_unmigrated_database_says_to_migrate(tmp_path):
    result = manage("runjobs", "--burst", DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert_one_line_error(result, 1, "run `python manage.py migrate` first")


def test_sigterm_stops_an_idle_worker_cleanly():
    worker = start_manage("runjobs", "--interval", "0.2")
    try:
        time.sleep(2)  # let it start and go idle
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=10)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert "SIGTERM received: no new jobs; the job in hand has 30s to finish" in stderr


def test_a_stop_while_django_loads_is_kept_even_inside_a_callback_python_ignores():
    """The example `manage.py` handler for Django's first half second: a SIGTERM landing in a
    weakref callback (the import system's module locks have one) ends the process with exit 0.
    A `sys.exit(0)` there was printed as "Exception ignored" and dropped, and a worker being
    started and stopped at once ran on with nobody left to stop it."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time, weakref
        import manage
        manage.leave_if_stopped_while_loading()
        class ModuleLock:
            pass
        def on_collect(_):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here, inside the callback
        lock = ModuleLock()
        ref = weakref.ref(lock, on_collect)
        del lock
        print("went on loading after the stop", flush=True)
        sys.exit(3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_sigterm_lets_the_job_in_hand_finish_then_exits():
    job = RecordingJobFactory(enqueue=True, sleep_seconds=2)
    worker = start_manage("runjobs", "--interval", "0.2")
    try:
        wait_for(lambda: Effect.objects.filter(job_id=job.pk).exists())
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert RecordingJob.objects.get(pk=job.pk).state == JobState.SUCCEEDED


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--grace", "later"], "'later' is not a number of seconds greater than 0"),
        (["--max-jobs", "0"], "'0' is not a whole number of jobs greater than 0"),
        (["--max-jobs", "1.5"], "'1.5' is not a whole number of jobs greater than 0"),
        (["--max-memory", "lots"], "'lots' is not a number of megabytes greater than 0"),
    ],
)
def test_bad_lifecycle_options_fail_with_one_clear_line(args, fragment):
    RecordingJobFactory(enqueue=True)
    assert_one_line_error(manage("runjobs", "--burst", *args), 2, fragment)
    assert not Effect.objects.exists()


def test_an_unreachable_database_is_one_line_and_exit_1():
    result = manage("runjobs", "--burst", DATABASE_URL="postgres://postgres@127.0.0.1:1/nothing")
    assert_one_line_error(result, 1, "cannot reach the database: connection failed")
