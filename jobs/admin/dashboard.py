"""The jobs dashboard: one admin page across every job model, served by `WorkerAdmin`.

Served from the admin site the `Worker` admin is registered on, so a project that adds
`admin.site.urls` gets it without a URL of its own, under that site's login and permissions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.apps import apps
from django.contrib.admin import AdminSite, ModelAdmin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.text import capfirst
from django.views.generic import TemplateView

from jobs.admin.display import format_memory_growth, live
from jobs.admin.filters import MemoryGrowthFilter
from jobs.conf.queues import QueueSettings, configured_queues
from jobs.cron.clock import ScheduleStatus, schedule_statuses
from jobs.cron.schedules import configured_schedules
from jobs.models import Job, Worker
from jobs.models.discovery import job_models
from jobs.monitoring import dashboard
from jobs.monitoring.health import default_queues, watched_queues
from jobs.monitoring.latency import QueueLatency, queue_latency

# The counts that link to a changelist: (name in `dashboard.lookups`, heading, what it means).
COUNT_COLUMNS = (
    ("new", "new", "Created and never enqueued: no worker runs them until enqueue()."),
    ("pending", "pending", "Runnable now: pending, and due."),
    ("scheduled", "scheduled", "Pending, due later (a future run_at: delayed or a retry)."),
    ("running", "running", "Claimed by a worker and not finished."),
    (
        "finished_last_hour",
        "finished 1 h",
        "Succeeded or failed for good in the last hour: the sum of the chart's bars.",
    ),
    ("failed_last_hour", "failed 1 h", "Failed for good (no attempts left) in the last hour."),
    ("failed_last_day", "failed 24 h", "Failed for good in the last 24 hours."),
    ("cancelled_last_day", "cancelled 24 h", "Cancelled in the last 24 hours."),
)


@dataclass
class Row:
    """One line of a dashboard table: a queue or a job model, with its counts."""

    key: str
    name: str
    counts: dashboard.Counts
    url: str = ""
    links: dict[str, str] | None = None


@dataclass
class MemoryRow:
    """A job model in the memory growth ranking, its growths in MB. `url` opens the hour's
    finished rows with a growth, the largest first; `worst_url` the worst attempt's job."""

    key: str
    name: str
    url: str
    attempts: int
    median: str
    worst: str
    worst_url: str


@dataclass
class ServiceLevelRow:
    """A queue the health checks watch: its SLA beside what its jobs wait now. `named` is
    False for a queue JOBS_QUEUES does not name, which is held to the default SLA."""

    queue: QueueSettings
    named: bool
    oldest_wait: Any
    probe: QueueLatency | None
    stale: bool
    pauses: list = field(default_factory=list)  # QueuePause rows: whole queue first

    @property
    def paused(self) -> Any:
        """The pause of the whole queue, if any: its jobs wait by choice, so never late."""
        return next((pause for pause in self.pauses if not pause.model), None)

    @property
    def over_sla(self) -> bool:
        if self.paused:
            return False
        waits = [self.oldest_wait, self.probe.latency if self.probe else None]
        sla = self.queue.sla
        return sla is not None and any(wait is not None and wait > sla for wait in waits)


@dataclass
class ScheduleRow:
    status: ScheduleStatus
    job_model: str
    job: tuple[str, str] | None


@dataclass
class WorkerRow:
    status: dashboard.WorkerStatus
    url: str
    jobs: list[tuple[str, str]]


def changelist_query(lookup: dict[str, Any]) -> str:
    """`lookup` as a changelist's URL carries it: the admin splits an `__in` value on commas."""
    return urlencode(
        {
            key: ",".join(value) if isinstance(value, list | tuple) else value
            for key, value in lookup.items()
        }
    )


class DashboardView(TemplateView):
    """What is queued, running and failing per queue and per job model, and the workers.

    Staff only (the site's `admin_view` wraps it). A user sees the job models they have the
    view or change permission for, and the workers only with that permission on `Worker`.
    """

    admin_site: AdminSite | None = None
    template_name = "admin/jobs/dashboard.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        request = self.request
        models = [model for model in job_models() if self.can_view(request, model)]
        summary = dashboard.summarize(models)
        lookups = dashboard.lookups(summary.now)
        model_rows = []
        for entry in summary.models:
            changelist = self.admin_url(entry.model, "changelist")
            links = (
                {
                    name: f"{changelist}?{changelist_query(lookup)}"
                    for name, lookup in lookups.items()
                }
                if changelist
                else None
            )
            name = capfirst(entry.model._meta.verbose_name_plural)
            label = entry.model._meta.label_lower
            model_rows.append(Row(label, name, entry.counts, changelist, links))
        return {
            **super().get_context_data(**kwargs),
            **self.admin_site.each_context(request),
            "title": "Jobs dashboard",
            "summary": summary,
            "count_columns": COUNT_COLUMNS,
            "queue_rows": [Row(name, name, counts) for name, counts in summary.queues.items()],
            "model_rows": model_rows,
            "total": Row("total", "all", summary.total),
            "failure_rows": self.failure_rows(summary, lookups),
            "memory_rows": self.memory_rows(summary, lookups),
            "live": live("dashboard", "#jobs-live-dashboard", default=True),
            **self.workers_context(request),
            **self.clock_context(request, summary, models),
        }

    def failure_rows(
        self, summary: dashboard.Summary, lookups: dict[str, dict[str, Any]]
    ) -> list[tuple[str, str, int, str]]:
        """(model name, error type, how many, link) of the last hour's failures by error type,
        asked only of the models that failed in it: nothing to read on a good day."""
        failing = [entry.model for entry in summary.models if entry.counts.failed_last_hour]
        rows = []
        for model, error_type, count in dashboard.failures_by_type(failing, summary.now):
            changelist = self.admin_url(model, "changelist")
            lookup = {**lookups["failed_last_hour"], "error_type": error_type}
            link = f"{changelist}?{changelist_query(lookup)}" if changelist else ""
            name = capfirst(model._meta.verbose_name_plural)
            rows.append((name, error_type or "(none)", count, link))
        return rows

    def memory_rows(
        self, summary: dashboard.Summary, lookups: dict[str, dict[str, Any]]
    ) -> list[MemoryRow]:
        """The job models ranked by how far their attempts of the last hour raised their
        workers' peak memory, asked only of the models that finished jobs in it."""
        finished = [entry.model for entry in summary.models if entry.counts.finished_last_hour]
        largest_first = {MemoryGrowthFilter.parameter_name: MemoryGrowthFilter.LARGEST_FIRST}
        rows = []
        for growth in dashboard.memory_growth_by_model(finished, summary.now):
            opts = growth.model._meta
            changelist = self.admin_url(growth.model, "changelist")
            lookup = {**lookups["finished_last_hour"], **largest_first}
            worst_url = ""
            if growth.worst_pk is not None:
                worst_url = self.admin_url(growth.model, "change", growth.worst_pk)
            rows.append(
                MemoryRow(
                    key=opts.label_lower,
                    name=capfirst(opts.verbose_name_plural),
                    url=f"{changelist}?{changelist_query(lookup)}" if changelist else "",
                    attempts=growth.attempts,
                    median=format_memory_growth(growth.median_kb),
                    worst=format_memory_growth(growth.worst_kb),
                    worst_url=worst_url,
                )
            )
        return rows

    def clock_context(
        self, request: HttpRequest, summary: dashboard.Summary, models: list[type[Job]]
    ) -> dict[str, Any]:
        """The service levels of the queues the health checks watch (those of JOBS_QUEUES,
        the default queues of the job `models` the user may see, the queues those models
        have live or recently finished rows on), and the schedules' last and next runs.

        Broken settings are shown, not raised: `manage.py check` names the mistake, and the
        rest of the dashboard is still worth seeing.
        """
        try:
            named = configured_queues()
            schedules = schedule_statuses(configured_schedules(), summary.now)
        except ValueError as exc:
            return {"clock_error": str(exc)}
        used = [
            name
            for name, counts in summary.queues.items()
            if counts.pending or counts.scheduled or counts.running or counts.finished_last_hour
        ]
        pauses = dashboard.queue_pauses()
        used += [name for name in pauses if name not in used]
        levels = []
        for name, queue in watched_queues(named, default_queues(models), used).items():
            counts = summary.queues.get(name)
            latency = queue_latency(name, summary.now) if queue.probe else None
            levels.append(
                ServiceLevelRow(
                    queue=queue,
                    named=name in named,
                    oldest_wait=counts.oldest_wait if counts else None,
                    probe=latency,
                    stale=latency is not None and latency.stale(summary.now),
                    pauses=pauses.get(name, []),
                )
            )
        rows = [
            ScheduleRow(
                status,
                status.schedule.model._meta.label,
                self.job_link(request, f"{run.job_model}#{run.job_pk}") if run else None,
            )
            for status in schedules
            for run in [status.last_run]
        ]
        return {"service_levels": levels, "schedules": rows}

    def workers_context(self, request: HttpRequest) -> dict[str, Any]:
        if not self.can_view(request, Worker):
            return {"workers": None}
        workers = dashboard.running_workers()
        return {
            "workers": workers,
            "worker_rows": [
                WorkerRow(
                    status,
                    self.admin_url(Worker, "change", status.worker.pk),
                    [self.job_link(request, label) for label in status.worker.jobs_in_flight],
                )
                for status in workers.processes
            ],
            "workers_url": self.admin_url(Worker, "changelist"),
        }

    def can_view(self, request: HttpRequest, model: type[Model]) -> bool:
        """The admin's own answer where the model is registered, else the user's permissions."""
        model_admin: ModelAdmin | None = self.admin_site._registry.get(model)
        if model_admin is not None:
            return model_admin.has_view_or_change_permission(request)
        opts = model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
            for action in ("view", "change")
        )

    def admin_url(self, model: type[Model], view: str, *args: Any) -> str:
        """The model's admin page on this site, or "" if it has none here."""
        opts = model._meta
        name = f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{view}"
        try:
            return reverse(name, args=args, current_app=self.admin_site.name)
        except NoReverseMatch:
            return ""

    def job_link(self, request: HttpRequest, label: str) -> tuple[str, str]:
        """A worker's in-flight job (`app.Model#pk`) and its admin page, if the user may see it."""
        model_label, _, pk = label.rpartition("#")
        try:
            model = apps.get_model(model_label)
        except (LookupError, ValueError):
            return label, ""
        if not issubclass(model, Job) or not self.can_view(request, model):
            return label, ""
        return label, self.admin_url(model, "change", pk)
