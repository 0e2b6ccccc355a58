"""`WorkerAdmin`: the worker processes as their heartbeats report them, and the home of the
jobs dashboard (`admin:jobs_dashboard`), so the dashboard lives on whichever admin site the
jobs app's admin is registered on, with no URLconf of its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from django.contrib import admin
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
)
from django.urls import path
from django.utils import timezone
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
        "jobs_in_flight",
        "jobs_performed",
        "memory",
    )
    fieldsets = (
        (None, {"fields": ("name", "host", "pid", "supervisor", "queues", "threads", "state")}),
        (
            "Life",
            {
                "fields": (
                    "started_at",
                    "last_heartbeat_at",
                    "stopped_at",
                    "stop_reason",
                    "jobs_in_flight",
                    "jobs_performed",
                    "clock_ticked_at",
                    "clock_offset",
                )
            },
        ),
        ("Memory", {"fields": ("memory_mb", "memory_chart", "memory_recycles")}),
        (
            "Autoscaling",
            {"fields": ("min_processes", "max_processes", "processes_wanted", "scaling_history")},
        ),
    )
    readonly_fields = ("memory_chart", "scaling_history")
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
        """Its name (`host:pid`), and the supervisor that started it, if one did; an
        autoscaling supervisor's range, and its latest decision."""
        if worker.supervisor is not None:
            return format_html(
                '{}<br><small class="job-quiet">under {}</small>', worker.name, worker.supervisor
            )
        if not worker.autoscaled:
            return worker.name
        latest = worker.scaling_decisions[-1] if worker.scaling_decisions else None
        return format_html(
            '{}<br><small class="job-quiet worker-scaling" title="{}">keeps {} of {}-{}{}</small>',
            worker.name,
            "\n".join(_decision_line(decision) for decision in worker.scaling_decisions),
            worker.processes_wanted,
            worker.min_processes,
            worker.max_processes,
            f"; {_decision_line(latest)}" if latest else "",
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
        shown = badge(
            WORKER_STATUS_COLOURS[name], name, css_class=f"worker-status {name}", tag="strong"
        )
        if name != "stopped" or not worker.stop_reason:
            return shown
        return format_html('{}<br><small class="job-quiet">{}</small>', shown, worker.stop_reason)

    @admin.display(description="memory", ordering="memory_mb")
    def memory(self, worker: Worker) -> str:
        """Its resident memory now, a line of it over the latest heartbeats, and how many
        times --max-memory recycled it (a supervisor: its worker processes)."""
        if worker.memory_mb is None:
            return "-"
        recycles = ""
        if worker.memory_recycles:
            recycles = format_html(
                '<br><small class="job-warning">{} recycle(s) for --max-memory</small>',
                worker.memory_recycles,
            )
        return format_html(
            "{}&nbsp;{}&nbsp;MB{}",
            memory_line(worker.memory_samples, width=60, height=18),
            f"{worker.memory_mb:.0f}",
            recycles,
        )

    @admin.display(description="memory over time")
    def memory_chart(self, worker: Worker) -> str:
        if not worker.memory_samples:
            return "-"
        megabytes = [megabytes for _, megabytes in worker.memory_samples]
        readings = (megabytes[0], megabytes[-1], min(megabytes), max(megabytes))
        first, last = (worker.memory_samples[i][0] for i in (0, -1))
        return format_html(
            "{}<br>{} to {} MB (lowest {}, highest {}) from {} to {} UTC",
            memory_line(worker.memory_samples, width=480, height=80),
            *(f"{value:.0f}" for value in readings),
            f"{datetime.fromtimestamp(first, UTC):%H:%M:%S}",
            f"{datetime.fromtimestamp(last, UTC):%H:%M:%S}",
        )

    @admin.display(description="scaling decisions")
    def scaling_history(self, worker: Worker) -> str:
        if not worker.scaling_decisions:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{}</li>",
                ((_decision_line(decision),) for decision in reversed(worker.scaling_decisions)),
            ),
        )

    @admin.display(description="started", ordering="started_at")
    def started(self, worker: Worker) -> str:
        return compact_time(worker.started_at, timesource.now())

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> str:
        """How long ago, and how far the host's clock is from the database's when that is
        notable (a second or more). Jobs use the database's time, so the offset decides
        nothing; it is flagged for the host's other software."""
        ago = format_html(
            '<span title="{}">{} ago</span>',
            format_moment(worker.last_heartbeat_at),
            format_duration(timesource.now() - worker.last_heartbeat_at),
        )
        offset = worker.clock_offset
        if offset is None or abs(offset) < NOTABLE_OFFSET_SECONDS:
            return ago
        return format_html(
            '{}<br><small class="job-warning" title="this host\'s clock is {} the database\'s">'
            "clock {}</small>",
            ago,
            "ahead of" if offset > 0 else "behind",
            f"{offset:+.3f}s",
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


def _decision_line(decision: dict) -> str:
    """One of a supervisor's scaling decisions, as the workers page shows it."""
    at = datetime.fromisoformat(decision["at"])
    change = (
        f"{decision['from']} → {decision['to']}"
        if decision["from"] != decision["to"]
        else f"stayed at {decision['to']}"
    )
    return f"{timezone.localtime(at):%H:%M:%S} {change}: {decision['why']}"


def memory_line(samples: list, *, width: int, height: int) -> str:
    """An inline SVG line of `samples` ([unix time, MB], oldest first): the shape of a
    process's memory, its highest reading at the top, the bottom at its lowest or at 90 % of
    the highest, whichever is lower. No script, no file: it is drawn with the page and
    refreshed with it."""
    if len(samples) < 2:
        return ""
    times = [at for at, _ in samples]
    values = [megabytes for _, megabytes in samples]
    span = (times[-1] - times[0]) or 1
    low, high = min(values), max(values)
    floor = min(low, high * 0.9)  # a wobble of a few per cent stays a flat line
    spread = (high - floor) or 1
    points = " ".join(
        f"{(at - times[0]) * (width - 2) / span + 1:.1f},"
        f"{height - 1 - (megabytes - floor) * (height - 2) / spread:.1f}"
        for at, megabytes in samples
    )
    return format_html(
        '<svg class="worker-memory" width="{}" height="{}" viewBox="0 0 {} {}" role="img">'
        "<title>{} to {} MB</title>"
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        width,
        height,
        width,
        height,
        f"{low:.0f}",
        f"{high:.0f}",
        points,
    )
