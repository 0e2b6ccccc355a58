"""A worker speaks in a project that configured no logging, and stays out of one that did.

The subprocess tests run `manage.py` with `tests.settings_bare`, which has no LOGGING setting,
as a project fresh from `startproject`; `tests.settings` configures the `jobs` logger, as a
project that took charge of its logging does.
"""

import io
import logging

import pytest

from jobs.joblog import capture_handler, capturing
from jobs.models import JobState
from tests.conftest import manage
from tests.factories import StepJobFactory

BARE = {"DJANGO_SETTINGS_MODULE": "tests.settings_bare"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_without_logging_settings_prints_its_jobs_and_keeps_their_lines():
    good = StepJobFactory(enqueue=True, steps=2)
    bad = StepJobFactory(enqueue=True, steps=2, fail_at=2)
    result = manage("runjobs", "--burst", **BARE)
    assert result.returncode == 0, result.stderr
    assert f"INFO jobs.execution: {good.label} started" in result.stderr
    assert "INFO jobs.job.testapp.StepJob: step 2 of 2" in result.stderr
    assert f"INFO jobs.execution: {good.label} succeeded" in result.stderr
    assert f"ERROR jobs.execution: {bad.label} failed" in result.stderr
    assert "ValueError: step 2 refused token" in result.stderr  # with its traceback
    good.refresh_from_db()
    assert good.state == JobState.SUCCEEDED
    assert "step 1 of 2" in good.log
    assert "step 2 of 2" in good.log


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_verbosity_zero_keeps_the_console_to_warnings_and_errors():
    bad = StepJobFactory(enqueue=True, steps=1, fail_at=1)
    result = manage("runjobs", "--burst", "--verbosity", "0", **BARE)
    assert result.returncode == 0, result.stderr
    assert "started" not in result.stderr
    assert f"ERROR jobs.execution: {bad.label} failed" in result.stderr


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_project_that_configures_logging_gets_each_line_once_from_its_own_handlers():
    job = StepJobFactory(enqueue=True, steps=1)
    result = manage("runjobs", "--burst")  # tests.settings: LOGGING sends `jobs` to a console
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"{job.label} started") == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_job_run_from_a_shell_without_logging_settings_still_reports_its_failure():
    job = StepJobFactory(enqueue=True, steps=1, fail_at=1)
    run = f"from tests.testapp.models import StepJob; StepJob.objects.get(pk={job.pk}).run()"
    result = manage("shell", "-c", run, **BARE)
    assert result.returncode == 0, result.stderr
    assert f"{job.label} failed" in result.stderr
    assert "ValueError: step 1 refused token" in result.stderr


@pytest.fixture
def bare_root(monkeypatch):
    """Call it inside a test (after pytest's own log capture joined the root logger): the
    root logger as an unconfigured process has it, but for the capture handler, with Python's
    last resort writing to the buffer it returns."""

    def strip() -> io.StringIO:
        monkeypatch.setattr(logging.getLogger(), "handlers", [capture_handler()])
        buffer = io.StringIO()
        monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(buffer))
        logging.lastResort.setLevel(logging.WARNING)
        return buffer

    return strip


def test_the_capture_handler_leaves_a_record_nobody_handles_to_the_last_resort(bare_root):
    last_resort = bare_root()
    logger = logging.getLogger("tests.console.unconfigured")
    logger.warning("disk almost full")
    logger.info("not for the last resort")
    assert last_resort.getvalue() == "disk almost full\n"


def test_the_capture_handler_stays_quiet_when_another_handler_took_the_record(bare_root):
    last_resort = bare_root()
    logger = logging.getLogger("tests.console.configured")
    taken = io.StringIO()
    handler = logging.StreamHandler(taken)
    logger.addHandler(handler)
    try:
        logger.error("reported once")
    finally:
        logger.removeHandler(handler)
    assert (taken.getvalue(), last_resort.getvalue()) == ("reported once\n", "")


def test_a_performing_thread_keeps_its_warning_and_the_last_resort_prints_it(bare_root):
    last_resort = bare_root()
    with capturing(lambda text: text) as log:
        logging.getLogger("tests.console.job").warning("retrying the upload")
    assert "WARNING tests.console.job: retrying the upload" in log.text()
    assert last_resort.getvalue() == "retrying the upload\n"
