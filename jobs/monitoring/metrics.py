"""Prometheus metrics of the jobs, read from the database at each scrape.

Nothing is kept in the serving process: gauges are counted from the job tables, counters and
histograms are the `MetricTally` totals every worker adds to (`jobs.monitoring.tally`), so any web
process on any host reports the same numbers, whichever processes ran the jobs.

A scrape costs one grouped query per job model, over the pending and running rows only
(answered from their partial indexes, as the dashboard's is, so finished history is never
read), one read of the tally rows, one of the workers, and two small look-ups per probed
queue. `jobs.views.metrics` serves it over HTTP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from jobs import timesource
from jobs.conf.queues import probe_queues
from jobs.models import Job, JobState, MetricTally
from jobs.models.discovery import job_models
from jobs.monitoring import dashboard, tally
from jobs.monitoring.latency import queue_latency

LABELS = ("queue", "model")
# The gauges counted from the job tables: (name in `dashboard.lookups`, metric, help).
LIVE_GAUGES = (
    ("pending", "jobs_pending", "Jobs runnable now: pending, their run_at come, not started."),
    ("scheduled", "jobs_scheduled", "Pending jobs whose run_at is still to come (delay, retry)."),
    ("running", "jobs_running", "Jobs a worker has claimed and not finished."),
)
COUNTER_HELP = {
    tally.SUCCEEDED: "Attempts that succeeded.",
    tally.FAILED: "Attempts that failed with no attempt left (or an error the model discards).",
    tally.RETRIED: "Attempts that failed and will be retried.",
    tally.RESCUED: "Running jobs taken back from a worker that stopped renewing its lease.",
}
HISTOGRAM_HELP = {
    tally.RUN_DURATION: "How long perform() ran, per attempt that succeeded, failed or retried.",
    tally.WAIT: "How long a job waited from its run_at until a worker started it, per attempt.",
}

# A series: (queue, job model label).
Series = tuple[str, str]


class JobsCollector(Collector):
    """Every jobs metric, as of the moment of the scrape (`timesource.now()`)."""

    def collect(self) -> Iterator[Metric]:
        now = timesource.now()
        models = job_models()
        live = {
            (row["queue"], model._meta.label): row
            for model in models
            for row in _live_rows(model, now)
        }
        totals = _totals()
        known = sorted(
            set(live)
            | {(model._meta.get_field("queue").default, model._meta.label) for model in models}
            | set(totals)
        )
        yield from _live_gauges(known, live, now)
        for name, help_text in COUNTER_HELP.items():
            counter = CounterMetricFamily(name, help_text, labels=LABELS)
            for series in known:
                counter.add_metric(series, totals[series].get(name, {}).get("", 0.0))
            yield counter
        for name, help_text in HISTOGRAM_HELP.items():
            histogram = HistogramMetricFamily(name, help_text, labels=LABELS)
            for series in known:
                recorded = totals[series]
                histogram.add_metric(
                    series,
                    buckets=_cumulative(recorded.get(f"{name}_bucket", {})),
                    sum_value=recorded.get(f"{name}_sum", {}).get("", 0.0),
                )
            yield histogram
        yield _latency(now)
        yield from _workers(now)


def _live_rows(model: type[Job], now: datetime) -> QuerySet:
    """The model's pending and running rows, counted per queue in one query.

    The WHERE clause is an OR of the states with partial indexes (`_due`, `_run`), so
    PostgreSQL reads only those indexes' rows, however much history the table holds.
    """
    counted = dashboard.lookups(now)
    return (
        model._default_manager.filter(Q(state=JobState.PENDING) | Q(state=JobState.RUNNING))
        .values("queue")
        .annotate(
            **{name: Count("pk", filter=Q(**counted[name])) for name, _, _ in LIVE_GAUGES},
            oldest_due_at=Min("run_at", filter=Q(**counted["pending"])),
        )
        .order_by()
    )


def _live_gauges(known: list[Series], live: dict[Series, dict], now: datetime) -> Iterator[Metric]:
    for name, metric, help_text in LIVE_GAUGES:
        gauge = GaugeMetricFamily(metric, help_text, labels=LABELS)
        for series in known:
            gauge.add_metric(series, live.get(series, {}).get(name, 0))
        yield gauge
    oldest = GaugeMetricFamily(
        "jobs_oldest_pending_age_seconds",
        "How long the oldest runnable job has been due (0 when none is).",
        labels=LABELS,
    )
    for series in known:
        due_at = live.get(series, {}).get("oldest_due_at")
        oldest.add_metric(series, (now - due_at).total_seconds() if due_at else 0.0)
    yield oldest


def _totals() -> defaultdict[Series, dict[str, dict[str, float]]]:
    """The tally rows: series -> row name -> bucket ("" for counters and sums) -> value."""
    totals: defaultdict[Series, dict[str, dict[str, float]]] = defaultdict(dict)
    for name, queue, model, bucket, value in MetricTally.objects.values_list(
        "name", "queue", "model", "bucket", "value"
    ):
        totals[queue, model].setdefault(name, {})[bucket] = value
    return totals


def _cumulative(per_bucket: dict[str, float]) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets (`le`) from the count of each bucket alone.

    Each stored count is added to every bucket whose bound is at least its own, so counts
    stored under bounds that have since changed still land in `+Inf` and the count.
    """
    stored = sorted((float(bound), count) for bound, count in per_bucket.items())
    buckets, total, taken = [], 0.0, 0
    for bound, label in zip(tally.SECONDS_BUCKETS, tally.BUCKET_LABELS, strict=True):
        while taken < len(stored) and stored[taken][0] <= bound:
            total += stored[taken][1]
            taken += 1
        buckets.append((label, total))
    return buckets


def _latency(now: datetime) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "jobs_queue_latency_seconds",
        "The queue's live latency: the last latency probe's wait, or the current one's if longer.",
        labels=("queue",),
    )
    for queue in probe_queues():
        if (latency := queue_latency(queue, now).latency) is not None:
            gauge.add_metric((queue,), latency.total_seconds())
    return gauge


def _workers(now: datetime) -> Iterable[Metric]:
    """Live worker processes: running, with a heartbeat within one lease."""
    workers = dashboard.running_workers(now)
    for name, help_text, value in (
        ("jobs_workers", "Live worker processes.", len(workers.alive)),
        ("jobs_worker_threads", "Job threads of the live worker processes.", workers.threads),
        ("jobs_worker_threads_busy", "Of those, threads running a job.", workers.threads_busy),
    ):
        yield GaugeMetricFamily(name, help_text, value=value)
    offsets = GaugeMetricFamily(
        "jobs_worker_clock_offset_seconds",
        "How far each host's clock is ahead of the database's (negative: behind), the largest "
        "among its live workers. Jobs use the database's time; alert on it for the host's sake.",
        labels=["host"],
    )
    by_host: dict[str, float] = {}
    for status in workers.alive:
        if (offset := status.worker.clock_offset) is not None:
            host = status.worker.host
            if abs(offset) >= abs(by_host.get(host, 0.0)):
                by_host[host] = offset
    for host, offset in sorted(by_host.items()):
        offsets.add_metric((host,), offset)
    yield offsets
