"""`Median`: exact on PostgreSQL and SQLite, NULLs left out, `filter=` honoured, others refused."""

from types import SimpleNamespace

import pytest
from django.db import NotSupportedError, connection
from django.db.models import F, Q
from django.test.utils import CaptureQueriesContext

from jobs.db.aggregates import Median
from tests.factories import RecordingJobFactory
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db


def rows(*growths_kb, queue: str = "default", state: str = "succeeded") -> None:
    """A RecordingJob per growth (None: not recorded), in `queue` and `state`."""
    for growth in growths_kb:
        job = RecordingJobFactory(queue=queue)
        RecordingJob.objects.filter(pk=job.pk).update(state=state, memory_growth_kb=growth)


def median(**filters) -> float | None:
    return RecordingJob.objects.filter(**filters).aggregate(m=Median("memory_growth_kb"))["m"]


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two():
    rows(0, 5000, 100, 0)
    assert median() == 50.0


def test_the_median_of_an_odd_count_is_the_middle_value():
    rows(5000, 0, 100)
    assert median() == 100.0
    assert isinstance(median(), float)


def test_nulls_are_left_out_and_no_value_is_none():
    rows(None, 7, None, 3)
    assert median() == 5.0
    assert median(memory_growth_kb=None) is None
    assert median(pk=-1) is None


def test_filter_keeps_only_the_matching_rows_of_each_group():
    rows(1, 2, 1000, queue="a", state="failed")
    rows(10, 20, 30, queue="a")
    rows(4, queue="b")
    grouped = (
        RecordingJob.objects.values_list("queue")
        .annotate(
            failed=Median("memory_growth_kb", filter=Q(state="failed")),
            all=Median("memory_growth_kb"),
        )
        .order_by("queue")
    )
    with CaptureQueriesContext(connection) as queries:
        assert list(grouped) == [("a", 2.0, 15.0), ("b", None, 4.0)]
    if connection.vendor != "mysql":  # which has no FILTER: Django writes a CASE
        assert "FILTER (WHERE" in queries[0]["sql"]


def test_it_reads_an_expression_not_just_a_column():
    rows(1024, 4096)
    found = RecordingJob.objects.aggregate(mb=Median(F("memory_growth_kb") / 1024.0))
    assert found["mb"] == 2.5


def test_other_databases_are_refused_with_what_to_do():
    with pytest.raises(NotSupportedError, match="MariaDB and MySQL, not oracle"):
        Median("memory_growth_kb").as_sql(None, SimpleNamespace(vendor="oracle"))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's Python aggregate")
@pytest.mark.django_db(transaction=True)
def test_on_sqlite_it_is_registered_once_per_raw_connection_and_again_after_a_reconnect():
    rows(1, 2, 3)
    assert median() == 2.0
    first = connection.connection
    assert connection._jobs_median_on is first
    assert median() == 2.0
    assert connection._jobs_median_on is first
    connection.close()
    assert median() == 2.0
    assert connection.connection is not first
    assert connection._jobs_median_on is connection.connection
