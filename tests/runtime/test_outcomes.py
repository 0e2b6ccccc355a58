"""A worker's finished outcomes: written with its next claim, in one transaction."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.runtime.outcomes import Outcomes
from jobs.runtime.worker import WorkerLoop
from tests.factories import RecordingJobFactory
from tests.test_execution import claimed, outcome_writes, states, succeeded

pytestmark = pytest.mark.django_db


def test_the_outcomes_finished_since_the_last_claim_are_one_statement_with_the_next_claim():
    jobs = claimed(3)
    outcomes = Outcomes("default")
    for job in jobs:
        outcomes.add(succeeded(job))
    RecordingJobFactory.create_batch(2, enqueue=True)
    with CaptureQueriesContext(connection) as queries:
        claimed_next = outcomes.write_with(lambda: WorkerLoop(threads=3).claim(3))
    assert len(claimed_next) == 2
    assert len(outcome_writes(queries)) == 1
    assert not outcomes
    assert states(jobs) == ["succeeded"] * 3
    assert [job.state for job in jobs] == ["succeeded"] * 3


def test_a_claim_that_fails_rolls_the_outcomes_back_to_be_written_again():
    jobs = claimed(2)
    outcomes = Outcomes("default")
    for job in jobs:
        outcomes.add(succeeded(job))

    def broken_claim():
        raise ConnectionResetError("cut")

    with pytest.raises(ConnectionResetError):
        outcomes.write_with(broken_claim)
    assert states(jobs) == ["running", "running"]
    assert outcomes  # still waiting: nothing was settled
    outcomes.write()
    assert states(jobs) == ["succeeded", "succeeded"]


def test_abandoned_outcomes_leave_their_rows_to_rescue_and_say_so():
    jobs = claimed(1)
    outcomes = Outcomes("default")
    outcome = succeeded(jobs[0])
    outcomes.add(outcome)
    outcomes.abandon()
    assert outcome.recorded is None
    assert states(jobs) == ["running"]
