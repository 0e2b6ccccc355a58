"""jobs.contrib.replica: a job's reads go to the replica, its writes, its own transaction's
reads and every read of a job model stay on the primary; and the check for its settings."""

import pytest
from django.db import router
from django.test import override_settings

from jobs.checks import check_settings
from jobs.models import JobState
from tests.testapp import middleware
from tests.testapp.models import Effect, RecordingJob

# Not in a test transaction: the router keeps reads inside one on the primary.
pytestmark = pytest.mark.django_db(transaction=True)

REPLICA = {
    "JOBS_MIDDLEWARE": ["jobs.contrib.replica.ReplicaReads", "tests.testapp.middleware.routing"],
    "DATABASE_ROUTERS": ["jobs.contrib.replica.ReplicaRouter"],
    "JOBS_READ_REPLICA": "default",  # an alias that exists; the decisions are what is checked
}


@pytest.fixture(autouse=True)
def _fresh_notes():
    middleware.SEEN.clear()


@override_settings(**{**REPLICA, "JOBS_READ_REPLICA": "replica"})
def test_reads_go_to_the_replica_only_inside_an_attempt_and_not_for_job_models():
    job = RecordingJob.objects.create(label_text="a").enqueue().run()
    assert job.state == JobState.SUCCEEDED
    assert middleware.SEEN == [
        "read Effect from replica",
        "read RecordingJob from default",
        "write Effect to default",
        "read Effect in a transaction from default",
    ]
    assert router.db_for_read(Effect) == "default"  # outside an attempt: no opinion


@override_settings(**{**REPLICA, "JOBS_READ_REPLICA": "replica"})
def test_a_job_model_can_keep_its_reads_on_the_primary(monkeypatch):
    monkeypatch.setattr(RecordingJob, "reads_from_replica", False, raising=False)
    RecordingJob.objects.create(label_text="a").enqueue().run()
    assert middleware.SEEN[0] == "read Effect from default"


@override_settings(**REPLICA)
def test_check_accepts_the_replica_settings():
    assert [e for e in check_settings() if e.id == "jobs.E016"] == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"JOBS_READ_REPLICA": "replica"}, "JOBS_READ_REPLICA is 'replica', which is not in"),
        ({"JOBS_READ_REPLICA": None}, "JOBS_READ_REPLICA is None"),
        ({"DATABASE_ROUTERS": []}, "DATABASE_ROUTERS lacks 'jobs.contrib.replica.ReplicaRouter'"),
    ],
)
def test_check_reports_replica_settings_that_would_read_from_the_primary(overrides, message):
    with override_settings(**{**REPLICA, **overrides}):
        (error,) = [e for e in check_settings() if e.id == "jobs.E016"]
    assert message in error.msg
