"""A host's clock offset from the database, where an operator sees it: the workers page and
the metrics. It decides nothing (jobs use the database's time); it is shown for the host's
sake."""

from datetime import timedelta

import pytest
from django.urls import reverse

from jobs import timesource
from jobs.models import Worker
from tests.monitoring.test_metrics import sample, scrape

pytestmark = pytest.mark.django_db


def worker(name: str, host: str, offset: float | None, *, silent_for: float = 0) -> Worker:
    now = timesource.now()
    return Worker.objects.create(
        name=name,
        host=host,
        pid=int(name.rpartition(":")[2]),
        started_at=now - timedelta(minutes=5),
        last_heartbeat_at=now - timedelta(seconds=silent_for),
        clock_offset=offset,
    )


def test_the_workers_page_flags_an_offset_of_a_second_or_more_beside_the_heartbeat(admin_client):
    worker("web-1:10", "web-1", 0.0004)
    worker("web-2:20", "web-2", -12.5)
    worker("lite:30", "lite", None)  # SQLite: one host, nothing to measure
    page = admin_client.get(reverse("admin:jobs_worker_changelist")).content.decode()
    assert "+0.000s" not in page  # under a second: nothing the host's software would notice
    assert (
        '<small class="job-warning" title="this host\'s clock is behind the database\'s">'
        "clock -12.500s</small>"
    ) in page


def test_metrics_give_each_host_its_largest_offset_among_live_workers(client):
    worker("a:1", "a", 0.5)
    worker("a:2", "a", -3.0)
    worker("b:3", "b", 0.01)
    worker("c:4", "c", 99.0, silent_for=3600)  # stale: its offset is not news any more
    samples = scrape(client)
    assert sample(samples, "jobs_worker_clock_offset_seconds", host="a") == -3.0
    assert sample(samples, "jobs_worker_clock_offset_seconds", host="b") == 0.01
    assert ("jobs_worker_clock_offset_seconds", frozenset({("host", "c")})) not in samples
