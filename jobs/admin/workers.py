"""`WorkerAdmin`: the worker processes as their heartbeats report them, and the home of the
jobs dashboard (`admin:jobs_dashboard`), so the dashboard lives on whichever admin site the
jobs app's admin is registered on, with no URLconf of its own."""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from jobs import timesource
from jobs.admin.dashboard import DashboardView
from jobs.admin.display import (
    STYLESHEETS,
    WORKER_STATUS_COLOURS,
    badge,
    compact_time,
    format_moment,
    live,
)
from jobs.durations import format_duration
from jobs.models import Worker
from jobs.timesource import NOTABLE_OFFSET_SECONDS


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Worker processes as their heartbeats report them; rows are written by workers only.

    It also serves the jobs dashboard (`admin:jobs_dashboard`), so the dashboard lives on
    whichever admin site the jobs app's admin is registered on, with no URLconf of its own.
    """

    class StatusFilter(admin.SimpleListFilter):
        """Alive, stale (running by its row, silent for a lease: presumed dead) or stopped."""

        title = "status"
        parameter_name = "status"

        def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
            return [("alive", "alive"), ("stale", "stale"), ("stopped", "stopped")]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet | None:
            if self.value() == "alive":
                return queryset.alive(timesource.now())
            if self.value() == "stale":
                return queryset.stale(timesource.now())
            if self.value() == "stopped":
                return queryset.exclude(state=Worker.State.RUNNING)
            return None

    list_display = (
        "process",
        "status",
        "queues_served",
        "threads",
        "started",
        "heartbeat",
        "clock",
        "jobs_in_flight",
        "jobs_performed",
    )
    list_filter = (StatusFilter, "state", "host")
    list_select_related = ("supervisor",)
    search_fields = ("name", "supervisor__name")
    # As on the job lists (`JobAdmin.nav_sidebar`): the columns need the sidebar's width.
    nav_sidebar = False

    class Media:
        css: ClassVar[dict] = STYLESHEETS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self) -> list:
        dashboard_view = DashboardView.as_view(admin_site=self.admin_site)
        return [
            path("dashboard/", self.admin_site.admin_view(dashboard_view), name="jobs_dashboard"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "live": live("workers", "#result_list, .paginator", default=False),
        }
        if not self.nav_sidebar:
            extra_context["is_nav_sidebar_enabled"] = False
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request: HttpRequest) -> list:
        """Jobs in flight link to their pages, where `request`'s user may see them."""
        return [
            _in_flight_column(self.admin_site, request) if name == "jobs_in_flight" else name
            for name in super().get_list_display(request)
        ]

    @admin.display(description="worker", ordering="name")
    def process(self, worker: Worker) -> str:
        """Its name (`host:pid`), and the supervisor that started it, if one did."""
        if worker.supervisor is None:
            return worker.name
        return format_html(
            '{}<br><small class="job-quiet">under {}</small>', worker.name, worker.supervisor
        )

    @admin.display(description="status", ordering="state")
    def status(self, worker: Worker) -> str:
        """Alive (running, heartbeat fresher than a lease), stale (running by its row but
        silent for a lease: presumed dead, its jobs rescued by others) or stopped."""
        if worker.state != Worker.State.RUNNING:
            name = "stopped"
        elif worker.is_alive(timesource.now()):
            name = "alive"
        else:
            name = "stale"
        return badge(
            WORKER_STATUS_COLOURS[name], name, css_class=f"worker-status {name}", tag="strong"
        )

    @admin.display(description="clock", ordering="clock_offset")
    def clock(self, worker: Worker) -> str:
        """How far the host's clock is from the database's. Jobs use the database's time, so
        it decides nothing; past a second it is flagged, for the host's other software."""
        if worker.clock_offset is None:
            return "-"
        text = f"{worker.clock_offset:+.3f}s"
        if abs(worker.clock_offset) < NOTABLE_OFFSET_SECONDS:
            return text
        direction = "ahead of" if worker.clock_offset > 0 else "behind"
        return format_html(
            '<span class="job-warning" title="this host\'s clock is {} the database\'s">{}</span>',
            direction,
            text,
        )

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> str:
        return compact_time(worker.started_at, timesource.now())

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> str:
        return format_html(
            '<span title="{}">{} ago</span>',
            format_moment(worker.last_heartbeat_at),
            format_duration(timesource.now() - worker.last_heartbeat_at),
        )

    @admin.display(description="queues")
    def queues_served(self, worker: Worker) -> str:
        return worker.queues or "all"


def _in_flight_column(site: admin.AdminSite, request: HttpRequest):
    """The workers page's "jobs in flight": one per line (`Model#pk`), each linked to its
    page as the dashboard links it, for a user who may see that model."""
    links = DashboardView(admin_site=site)

    @admin.display(description="jobs in flight")
    def jobs_in_flight(worker: Worker) -> str:
        if not worker.jobs_in_flight:
            return "-"
        lines = []
        for label, url in (links.job_link(request, label) for label in worker.jobs_in_flight):
            short = label.partition(".")[2]  # the model and pk: its app is in the title
            if url:
                lines.append(format_html('<a href="{}" title="{}">{}</a>', url, label, short))
            else:
                lines.append(format_html('<span title="{}">{}</span>', label, short))
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines))

    return jobs_in_flight
