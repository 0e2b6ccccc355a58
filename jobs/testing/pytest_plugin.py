"""pytest fixtures for jobs; enable them in your conftest.py with

    pytest_plugins = ["jobs.testing.pytest_plugin"]

They need the database like any test that touches it (`@pytest.mark.django_db`, or the
`db` fixture). `jobs.testing` is imported inside each fixture, not here, because pytest
loads this module before Django is set up.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def jobs_inline() -> Iterator[Any]:
    """Run every job enqueued during the test when it commits (see `run_jobs_inline()`);
    the value is the `InlineRun`, whose `ran` lists the jobs run."""
    from jobs.testing import run_jobs_inline

    with run_jobs_inline() as inline:
        yield inline


@pytest.fixture
def drain_jobs() -> Callable[..., list[Any]]:
    """`jobs.testing.drain`: call it to run the pending jobs now and get their outcomes."""
    from jobs.testing import drain

    return drain


@pytest.fixture
def enqueued_jobs() -> Iterator[list[Any]]:
    """The jobs enqueued during the test, in order, as they were enqueued
    (see `captured_jobs()`)."""
    from jobs.testing import captured_jobs

    with captured_jobs() as captured:
        yield captured
