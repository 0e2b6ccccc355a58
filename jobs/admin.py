"""`JobAdmin`: the admin every job model reuses to inspect, filter, requeue and cancel.

Lifecycle fields are read-only here; the actions go through the same guarded verbs as the
shell (`requeue()`, `cancel()`), so the admin cannot put a row into an impossible state.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html, format_html_join

from jobs import clock, dashboard
from jobs.models import LIFECYCLE_FIELDS, ROW_OPTIONS, JobState, Worker
from jobs.views import DashboardView

STATE_COLOURS = {
    JobState.NEW: "#6c757d",
    JobState.PENDING: "#0d6efd",
    JobState.RUNNING: "#fd7e14",
    JobState.SUCCEEDED: "#198754",
    JobState.FAILED: "#dc3545",
    JobState.CANCELLED: "#495057",
}

TIMELINE_FIELDS = (
    "state",
    "requested_at",
    "run_at",
    "started_at",
    "finished_at",
    "wait_time",
    "run_time",
    "attempts",
    "claimed_by",
)
ERROR_FIELDS = ("error_type", "error_message", "error_traceback_display", "error_history_display")


def format_duration(duration: timedelta | None) -> str:
    if duration is None:
        return "-"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class JobAdmin(admin.ModelAdmin):
    """Base admin for job models. Subclass it and add the domain's `search_fields`."""

    list_display = (
        "id",
        "state_badge",
        "queue",
        "priority",
        "requested_at",
        "started_at",
        "finished_at",
        "attempts_display",
        "wait_time",
        "run_time",
    )
    list_filter = ("state", ("queue", admin.AllValuesFieldListFilter))
    readonly_fields = (*TIMELINE_FIELDS, *ERROR_FIELDS)
    actions = ("requeue_jobs", "cancel_jobs")
    date_hierarchy = "requested_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Durations are computed in SQL so the changelist can sort by them."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                wait_duration=ExpressionWrapper(
                    F("started_at") - F("requested_at"), output_field=DurationField()
                ),
                run_duration=ExpressionWrapper(
                    F("finished_at") - F("started_at"), output_field=DurationField()
                ),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:
        domain = [
            field.name
            for field in self.model._meta.fields
            if field.editable
            and not field.primary_key
            and field.name not in ROW_OPTIONS
            and field.name not in LIFECYCLE_FIELDS
        ]
        fieldsets = [(None, {"fields": domain}), ("Queueing", {"fields": list(ROW_OPTIONS)})]
        if obj is not None:
            fieldsets.append(("Lifecycle", {"fields": list(TIMELINE_FIELDS)}))
            fieldsets.append(("Last error", {"fields": list(ERROR_FIELDS)}))
        return fieldsets

    @admin.display(description="state", ordering="state")
    def state_badge(self, job) -> str:
        return format_html(
            '<span class="job-state" style="color:#fff;background:{};padding:1px 6px;'
            'border-radius:8px;white-space:nowrap">{}</span>',
            STATE_COLOURS[job.state],
            job.get_state_display(),
        )

    @admin.display(description="attempts", ordering="attempts")
    def attempts_display(self, job) -> str:
        return f"{job.attempts} of {job.max_attempts}"

    @admin.display(description="wait", ordering="wait_duration")
    def wait_time(self, job) -> str:
        """From requested to started: how long the job queued."""
        return format_duration(job.wait_duration)

    @admin.display(description="run time", ordering="run_duration")
    def run_time(self, job) -> str:
        return format_duration(job.run_duration)

    @admin.display(description="traceback")
    def error_traceback_display(self, job) -> str:
        if not job.error_traceback:
            return "-"
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', job.error_traceback)

    @admin.display(description="earlier failures")
    def error_history_display(self, job) -> str:
        """Each kept failure, newest first, so "failed 3 times, here is each" is one look."""
        if not job.error_history:
            return "-"
        return format_html(
            "<ol reversed>{}</ol>",
            format_html_join(
                "",
                "<li><strong>attempt {} at {} on {}</strong>: {}: {}"
                '<pre style="white-space:pre-wrap">{}</pre></li>',
                (
                    (
                        entry["attempt"],
                        entry["at"],
                        entry["worker"] or "-",
                        entry["type"],
                        entry["message"],
                        entry["traceback"],
                    )
                    for entry in reversed(job.error_history)
                ),
            ),
        )

    @admin.action(description="Requeue selected failed or cancelled jobs", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = queryset.count()
        self._report(request, selected, queryset.requeue(), "requeued", "failed or cancelled")

    @admin.action(description="Cancel selected jobs that have not started", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = queryset.count()
        self._report(request, selected, queryset.cancel(), "cancelled", "new or pending")

    def _report(
        self, request: HttpRequest, selected: int, changed: int, verb: str, applies_to: str
    ) -> None:
        """Counted before the change: the selection carries the changelist's filters, which
        the changed rows may no longer match."""
        skipped = selected - changed
        message = f"{changed} job{'s' if changed != 1 else ''} {verb}."
        if skipped:
            message += f" {skipped} skipped: only {applies_to} jobs can be {verb}."
        self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)


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
            running = queryset.filter(state=Worker.State.RUNNING)
            fresh = Q(last_heartbeat_at__gt=dashboard.stale_before(clock.now()))
            return {
                "alive": running.filter(fresh),
                "stale": running.exclude(fresh),
                "stopped": queryset.exclude(state=Worker.State.RUNNING),
            }.get(self.value())

    list_display = (
        "name",
        "state",
        "alive",
        "queues_served",
        "supervisor",
        "threads",
        "started_at",
        "heartbeat",
        "jobs_in_flight",
        "jobs_performed",
    )
    list_filter = (StatusFilter, "state", "host")
    list_select_related = ("supervisor",)
    search_fields = ("name", "supervisor__name")

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

    @admin.display(boolean=True, description="alive")
    def alive(self, worker: Worker) -> bool:
        """Running, with a heartbeat fresher than a lease: a worker past that is presumed dead."""
        fresh = dashboard.heartbeat_is_fresh(worker, clock.now())
        return worker.state == Worker.State.RUNNING and fresh

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> str:
        """How long ago, flagged when a running worker has gone quiet for a lease."""
        ago = format_html("{} ago", format_duration(clock.now() - worker.last_heartbeat_at))
        if worker.state != Worker.State.RUNNING or self.alive(worker):
            return ago
        return format_html(
            '{} <strong style="color:#fff;background:{};padding:1px 6px;border-radius:8px">'
            "stale</strong>",
            ago,
            STATE_COLOURS[JobState.FAILED],
        )

    @admin.display(description="queues")
    def queues_served(self, worker: Worker) -> str:
        return worker.queues or "all"
