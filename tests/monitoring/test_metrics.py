"""Prometheus metrics: counting in the process, summing in the database, serving at scrape."""

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from jobs import signals
from jobs.db import engine_for
from jobs.errors import ConfigurationError
from jobs.models import LatencyProbe, MetricTally, Worker
from jobs.models.discovery import job_models
from jobs.monitoring import metrics, tally
from jobs.runtime.worker import WorkerLoop as JobWorker
from tests.conftest import NOON
from tests.factories import RecordingJobFactory, UrgentJobFactory
from tests.testapp.models import HugeErrorJob, RecordingJob

RECORDING = {"queue": "default", "model": "testapp.RecordingJob"}
URGENT = {"queue": "urgent", "model": "testapp.UrgentJob"}


@pytest.fixture(autouse=True)
def fresh_tally(monkeypatch):
    """A tally of this test's own: counts another test could not save must not leak in."""
    monkeypatch.setattr(tally, "TALLY", tally.Tally())


def saved() -> dict[tuple[str, str, str, str], float]:
    return {
        (row.name, row.queue, row.model, row.bucket): row.value for row in MetricTally.objects.all()
    }


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """The endpoint's samples: (sample name, its labels) -> value."""
    response = client.get(reverse("jobs-metrics"), headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


@pytest.mark.django_db
def test_outcomes_are_counted_per_queue_and_model_and_saved_by_run(frozen):
    RecordingJobFactory(enqueue=True).run()
    RecordingJobFactory(enqueue=True, fail=True).run()
    RecordingJobFactory(enqueue=True, fail=True, max_attempts=2).run()
    UrgentJobFactory(enqueue=True).run()
    totals = saved()
    for name, value in [
        ("jobs_succeeded_total", 1),
        ("jobs_failed_total", 1),
        ("jobs_retried_total", 1),
        ("jobs_wait_seconds_bucket", 3),  # frozen clock: each started the moment it was due
        ("jobs_wait_seconds_sum", 0),
    ]:
        assert (
            totals[name, "default", "testapp.RecordingJob", "0.005" if "bucket" in name else ""]
            == value
        )
    assert totals["jobs_succeeded_total", "urgent", "testapp.UrgentJob", ""] == 1
    assert sum(v for k, v in totals.items() if k[0] == "jobs_run_duration_seconds_bucket") == 4


@pytest.mark.django_db
def test_an_observation_goes_into_the_first_bucket_at_least_as_large():
    job = RecordingJob(queue="default")
    for seconds in (0.0, 0.005, 0.0051, 3600, 7200):
        tally.TALLY.record(job, histogram=tally.RUN_DURATION, seconds=seconds)
    assert tally.flush("default")
    buckets = {k[3]: v for k, v in saved().items() if k[0] == "jobs_run_duration_seconds_bucket"}
    assert buckets == {"0.005": 2, "0.01": 1, "3600.0": 1, "+Inf": 1}
    assert saved()["jobs_run_duration_seconds_sum", *RECORDING.values(), ""] == 10800.0101


@pytest.mark.django_db
def test_a_job_run_without_being_queued_waited_nothing_and_a_negative_wait_counts_as_none(frozen):
    RecordingJobFactory().run()  # new, never enqueued: no run_at
    skewed = RecordingJob(queue="default", run_at=NOON + timedelta(seconds=5), started_at=NOON)
    signals.send(signals.job_started, skewed)
    tally.flush("default")
    assert saved()["jobs_wait_seconds_bucket", *RECORDING.values(), "0.005"] == 2
    assert saved()["jobs_wait_seconds_sum", *RECORDING.values(), ""] == 0


@pytest.mark.django_db
def test_a_proxy_model_is_counted_under_its_concrete_model():
    HugeErrorJob.objects.create().enqueue().run()
    assert saved()["jobs_failed_total", *RECORDING.values(), ""] == 1
    assert ("jobs_failed_total", "default", "testapp.HugeErrorJob", "") not in saved()


@pytest.mark.django_db
def test_a_rescue_is_counted(frozen):
    job = RecordingJobFactory(enqueue=True, max_attempts=2)
    engine_for("default").claim(RecordingJob, queue=None, worker="gone:1", now=NOON)
    frozen.now = NOON + timedelta(hours=1)
    assert RecordingJob.objects.rescue() == 1
    tally.flush("default")
    assert saved() == {("jobs_rescued_total", "default", "testapp.RecordingJob", ""): 1}
    job.refresh_from_db()
    assert job.state == "pending"


@pytest.mark.django_db
def test_flushes_add_to_the_saved_totals_and_a_flush_with_nothing_counted_writes_nothing(
    django_assert_num_queries,
):
    job = RecordingJob(queue="default")
    for _ in range(3):
        tally.TALLY.record(job, counter=tally.SUCCEEDED)
        tally.flush("default")
    with django_assert_num_queries(0):
        assert tally.flush("default")
    assert saved() == {("jobs_succeeded_total", "default", "testapp.RecordingJob", ""): 3}


@pytest.mark.django_db
def test_counts_wait_in_memory_while_the_database_is_unreachable(caplog):
    job = RecordingJob(queue="default")
    tally.TALLY.record(job, counter=tally.FAILED)

    def unreachable(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with caplog.at_level(logging.WARNING, logger="jobs.runtime.worker"):
        with connection.execute_wrapper(unreachable):
            assert not tally.flush("default")
            tally.TALLY.record(job, counter=tally.FAILED)
            assert not tally.flush("default")
        assert tally.flush("default")
    assert saved() == {("jobs_failed_total", "default", "testapp.RecordingJob", ""): 2}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("database unavailable while saving job metrics")
    assert messages[1].startswith("database back for saving job metrics")


@pytest.mark.django_db(transaction=True)
def test_concurrent_flushes_lose_no_increment_even_when_both_insert_the_same_row():
    """Each round counts into series that do not exist yet, and both threads flush at once:
    both find the rows missing, both insert, one loses on the unique constraint and adds."""
    rounds, per_round = 20, 7
    barrier = threading.Barrier(2, timeout=30)  # a thread that fails breaks it for the other

    def count_and_flush(_) -> None:
        mine = tally.Tally()
        try:
            for number in range(rounds):
                job = RecordingJob(queue=f"q{number}")
                for _ in range(per_round):
                    mine.record(job, counter=tally.SUCCEEDED, histogram=tally.WAIT, seconds=1)
                barrier.wait()
                assert mine.flush("default")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(count_and_flush, range(2)))  # re-raises what a thread raised
    totals = saved()
    for number in range(rounds):
        series = f"q{number}", "testapp.RecordingJob"
        assert totals["jobs_succeeded_total", *series, ""] == 2 * per_round
        assert totals["jobs_wait_seconds_bucket", *series, "1.0"] == 2 * per_round
        assert totals["jobs_wait_seconds_sum", *series, ""] == 2 * per_round
    assert len(totals) == 3 * rounds


@pytest.mark.django_db(transaction=True)
def test_a_worker_saves_its_counts_when_it_stops():
    RecordingJobFactory(enqueue=True)
    RecordingJobFactory(enqueue=True, fail=True)
    JobWorker(burst=True).run()
    totals = saved()
    assert totals["jobs_succeeded_total", *RECORDING.values(), ""] == 1
    assert totals["jobs_failed_total", *RECORDING.values(), ""] == 1


@pytest.mark.django_db
def test_gauges_count_pending_scheduled_and_running_jobs_and_the_oldest_wait(client, frozen):
    RecordingJobFactory(enqueue=True, enqueue__run_at=NOON - timedelta(minutes=10))
    engine_for("default").claim(RecordingJob, queue=None, worker="w:1", now=NOON)
    RecordingJobFactory(enqueue=True, enqueue__run_at=NOON - timedelta(minutes=3))
    RecordingJobFactory(enqueue=True)
    RecordingJobFactory(enqueue=True, enqueue__delay=60)
    RecordingJobFactory(enqueue=True, enqueue__queue="low", enqueue__delay=60)
    RecordingJobFactory()  # new: not queued, not counted
    samples = scrape(client)
    assert sample(samples, "jobs_pending", **RECORDING) == 2
    assert sample(samples, "jobs_scheduled", **RECORDING) == 1
    assert sample(samples, "jobs_running", **RECORDING) == 1
    assert sample(samples, "jobs_oldest_pending_age_seconds", **RECORDING) == 180
    low = {"queue": "low", "model": "testapp.RecordingJob"}
    assert sample(samples, "jobs_scheduled", **low) == 1
    assert sample(samples, "jobs_oldest_pending_age_seconds", **low) == 0
    # A model's default queue is always shown, so a series exists before its first job.
    assert sample(samples, "jobs_pending", **URGENT) == 0
    assert sample(samples, "jobs_succeeded_total", **URGENT) == 0
    assert sample(samples, "jobs_wait_seconds_count", **URGENT) == 0


@pytest.mark.django_db
def test_counters_and_histograms_show_the_saved_totals_with_cumulative_buckets(client):
    for name, bucket, value in [
        ("jobs_failed_total", "", 4),
        ("jobs_run_duration_seconds_bucket", "0.005", 2),
        ("jobs_run_duration_seconds_bucket", "1.0", 1),
        ("jobs_run_duration_seconds_bucket", "0.3", 1),  # a bound no longer in use
        ("jobs_run_duration_seconds_bucket", "+Inf", 1),
        ("jobs_run_duration_seconds_sum", "", 5000.5),
    ]:
        MetricTally.objects.create(name=name, bucket=bucket, value=value, **RECORDING)
    samples = scrape(client)
    assert sample(samples, "jobs_failed_total", **RECORDING) == 4
    assert sample(samples, "jobs_retried_total", **RECORDING) == 0
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "jobs_run_duration_seconds_bucket"
        and ("model", "testapp.RecordingJob") in labels
    }
    assert (buckets["0.005"], buckets["0.25"], buckets["0.5"], buckets["1.0"]) == (2, 2, 3, 4)
    assert (buckets["3600.0"], buckets["+Inf"]) == (4, 5)
    assert sample(samples, "jobs_run_duration_seconds_count", **RECORDING) == 5
    assert sample(samples, "jobs_run_duration_seconds_sum", **RECORDING) == 5000.5


@pytest.mark.django_db
def test_live_workers_and_their_threads_are_counted(client, frozen):
    Worker.register("host:1", queues=None, threads=4, supervisor=None)
    Worker.register("host:2", queues=None, threads=2, supervisor=None)
    Worker.objects.filter(name="host:2").update(jobs_in_flight=["testapp.RecordingJob#1"])
    Worker.register("host:3", queues=None, threads=8, supervisor=None)
    Worker.mark_stopped("host:3")
    frozen.now = NOON + timedelta(minutes=5)
    Worker.register("host:4", queues=None, threads=1, supervisor=None)  # the others went quiet
    Worker.objects.filter(name="host:1").update(last_heartbeat_at=frozen.now)
    Worker.objects.filter(name="host:2").update(last_heartbeat_at=frozen.now)
    samples = scrape(client)
    assert sample(samples, "jobs_workers") == 3
    assert sample(samples, "jobs_worker_threads") == 7
    assert sample(samples, "jobs_worker_threads_busy") == 1


@pytest.mark.django_db
def test_each_probed_queue_reports_its_latency(client, frozen, settings):
    settings.JOBS_QUEUES = {"urgent": {"probe": True}, "quiet": {"probe": True}}
    LatencyProbe.objects.create().enqueue(queue="urgent", run_at=NOON - timedelta(seconds=30))
    samples = scrape(client)
    assert sample(samples, "jobs_queue_latency_seconds", queue="urgent") == 30
    assert ("jobs_queue_latency_seconds", frozenset({("queue", "quiet")})) not in samples


@pytest.mark.django_db
def test_the_endpoint_is_open_without_a_token_and_answers_only_reads(client):
    assert client.get(reverse("jobs-metrics")).status_code == 200
    assert client.head(reverse("jobs-metrics")).status_code == 200
    assert client.post(reverse("jobs-metrics")).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        "Bearer s3cret-token-but-longer",
        "Bearer s3cret-toke",
        "Basic s3cret-token",
        "s3cret-token",
        "Bearer sécret-token",
    ],
)
def test_with_a_token_a_scrape_without_it_is_refused(client, settings, authorization):
    settings.JOBS_METRICS_TOKEN = "s3cret-token"
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get(reverse("jobs-metrics"), headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="jobs-metrics"'
    assert b"jobs_pending" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", ["Bearer s3cret-token", "bearer  s3cret-token"])
def test_with_a_token_a_scrape_that_bears_it_is_served(client, settings, authorization):
    settings.JOBS_METRICS_TOKEN = "s3cret-token"
    samples = scrape(client, Authorization=authorization)
    assert sample(samples, "jobs_pending", **RECORDING) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["", "   ", "two words", "sécret", 12345, b"bytes"])
def test_an_unusable_token_setting_is_a_clear_error(client, settings, token):
    settings.JOBS_METRICS_TOKEN = token
    with pytest.raises(ConfigurationError, match="JOBS_METRICS_TOKEN must be a string"):
        client.get(reverse("jobs-metrics"), headers={"Authorization": f"Bearer {token}"})


@pytest.mark.django_db
def test_a_scrape_costs_the_same_few_queries_however_many_jobs(client, frozen, settings):
    settings.JOBS_QUEUES = {"urgent": {"probe": True}}
    # One grouped query per job model, one for the tallies, one for the workers, two for the
    # probed queue.
    expected = len(job_models()) + 1 + 1 + 2

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured)

    assert queries() == expected
    RecordingJobFactory.create_batch(5, enqueue=True)
    UrgentJobFactory.create_batch(5, enqueue=True, enqueue__delay=60)
    for job in RecordingJobFactory.create_batch(5, enqueue=True):
        job.run()
    assert queries() == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's EXPLAIN")
@pytest.mark.django_db
def test_the_live_gauges_read_only_what_the_partial_indexes_cover(frozen):
    """With sequential scans priced out, the plan shows the query *can* use the indexes."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = metrics._live_rows(RecordingJob, NOON).explain()
    assert "Seq Scan" not in plan, plan
    assert re.search(r"Index Scan on \w+_run\b", plan), plan
    assert re.search(r"Index Scan on \w+_(due|pend|any)\b", plan), plan
