"""The jobs dashboard: one admin page across every job model, served by `WorkerAdmin`.

Served from the admin site the `Worker` admin is registered on, so a project that adds
`admin.site.urls` gets it without a URL of its own, under that site's login and permissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.apps import apps
from django.contrib.admin import AdminSite, ModelAdmin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.text import capfirst
from django.views.generic import TemplateView

from jobs import dashboard
from jobs.heartbeat import QueueLatency, queue_latency
from jobs.models import Job, Worker
from jobs.queues import QueueSettings, configured_queues
from jobs.registry import job_models
from jobs.scheduler import ScheduleStatus, schedule_statuses
from jobs.schedules import configured_schedules

# The counts that link to a changelist: (name in `dashboard.lookups`, heading, what it means).
COUNT_COLUMNS = (
    ("pending", "pending", "Runnable now: pending, and due."),
    ("scheduled", "scheduled", "Pending, due later (a future run_at: delayed or a retry)."),
    ("running", "running", "Claimed by a worker and not finished."),
    ("failed_last_hour", "failed 1 h", "Failed for good (no attempts left) in the last hour."),
    ("failed_last_day", "failed 24 h", "Failed for good in the last 24 hours."),
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
class ServiceLevelRow:
    """A queue of JOBS_QUEUES: its SLA beside what its jobs wait now."""

    queue: QueueSettings
    oldest_wait: Any
    heartbeat: QueueLatency | None
    stale: bool

    @property
    def over_sla(self) -> bool:
        waits = [self.oldest_wait, self.heartbeat.latency if self.heartbeat else None]
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
                {name: f"{changelist}?{urlencode(lookup)}" for name, lookup in lookups.items()}
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
            **self.workers_context(request),
            **self.clock_context(request, summary),
        }

    def clock_context(self, request: HttpRequest, summary: dashboard.Summary) -> dict[str, Any]:
        """The queues' service levels and the schedules' last and next runs.

        Broken settings are shown, not raised: `manage.py check` names the mistake, and the
        rest of the dashboard is still worth seeing.
        """
        try:
            queues = configured_queues()
            schedules = schedule_statuses(configured_schedules(), summary.now)
        except ValueError as exc:
            return {"clock_error": str(exc)}
        levels = []
        for name, queue in queues.items():
            counts = summary.queues.get(name)
            latency = queue_latency(name, summary.now) if queue.heartbeat else None
            levels.append(
                ServiceLevelRow(
                    queue=queue,
                    oldest_wait=counts.oldest_wait if counts else None,
                    heartbeat=latency,
                    stale=latency is not None and latency.stale(summary.now),
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
