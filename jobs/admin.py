"""`JobAdmin`: the admin every job model reuses to inspect, filter and act on its jobs.

Lifecycle fields are read-only here; the actions go through the same guarded verbs as the
shell (`jobs.operator`), so the admin cannot put a row into an impossible state, and every
change an operator makes is in Django's admin log, shown on the job's page.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from jobs import clock, dashboard
from jobs.identity import claimed_by_process
from jobs.models import (
    LIFECYCLE_FIELDS,
    MASK,
    ROW_OPTIONS,
    Heartbeat,
    JobState,
    TaskJob,
    Worker,
)
from jobs.operator import OFFERED, OPERATIONS
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
    "cancel_requested_at",
    "progress_display",
)
ERROR_FIELDS = ("error_type", "error_message", "error_traceback_display", "error_history_display")
ACTIVITY_FIELDS = ("log_display", "operator_history")
# The finished-within filter's windows.
FINISHED_WINDOWS = {
    "1h": ("in the last hour", timedelta(hours=1)),
    "24h": ("in the last 24 hours", timedelta(days=1)),
    "7d": ("in the last 7 days", timedelta(days=7)),
}
# Audit entries shown on a job's page, newest first; the History page has them all.
HISTORY_SHOWN = 20


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


class WorkerFilter(admin.SimpleListFilter):
    """The jobs a worker process claimed (`claimed_by` names it, see `jobs.identity`).

    Offers the processes in the `Worker` table, the only list of workers that stays small,
    rather than the distinct `claimed_by` values of every row ever run.
    """

    title = "worker"
    parameter_name = "worker"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        names = Worker.objects.filter(supervisor__isnull=False) | Worker.objects.filter(
            processes__isnull=True
        )
        names = names.distinct().order_by("name").values_list("name", flat=True)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(claimed_by_process(self.value()))
        return queryset


class FinishedWithinFilter(admin.SimpleListFilter):
    """Finished in the last hour, day or week: "what failed since the deploy?"."""

    title = "finished"
    parameter_name = "finished_within"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(key, label) for key, (label, _) in FINISHED_WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if (window := FINISHED_WINDOWS.get(self.value())) is not None:
            return queryset.filter(finished_at__gte=clock.now() - window[1])
        return queryset


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
    list_filter = (
        "state",
        ("queue", admin.AllValuesFieldListFilter),
        WorkerFilter,
        FinishedWithinFilter,
    )
    readonly_fields = (*TIMELINE_FIELDS, *ERROR_FIELDS, *ACTIVITY_FIELDS, "sensitive_display")
    actions = ("requeue_jobs", "cancel_jobs", "retry_now_jobs", "run_now_jobs")
    date_hierarchy = "requested_at"
    # A table of a million finished rows is counted once per page, not twice.
    show_full_result_count = False
    change_form_template = "admin/jobs/job_change_form.html"
    change_list_template = "admin/jobs/job_change_list.html"

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
        """Domain fields (secrets masked, not editable), queueing, then what happened."""
        sensitive = set(self.model.sensitive_fields)
        domain = [
            field.name
            for field in self.model._meta.fields
            if field.editable
            and not field.primary_key
            and field.name not in ROW_OPTIONS
            and field.name not in LIFECYCLE_FIELDS
            and field.name not in sensitive
        ]
        if sensitive:
            domain.append("sensitive_display")
        fieldsets = [(None, {"fields": domain}), ("Queueing", {"fields": list(ROW_OPTIONS)})]
        if obj is not None:
            fieldsets.append(("Lifecycle", {"fields": list(TIMELINE_FIELDS)}))
            fieldsets.append(("Last error", {"fields": list(ERROR_FIELDS)}))
            fieldsets.append(("Activity", {"fields": list(ACTIVITY_FIELDS)}))
        return fieldsets

    def get_list_display(self, request: HttpRequest) -> list:
        """A sensitive field a subclass lists shows as a mask."""
        return [
            _masked_column(name) if name in self.model.sensitive_fields else name
            for name in super().get_list_display(request)
        ]

    def get_urls(self) -> list:
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path(
                "<path:object_id>/operate/<str:operation>/",
                self.admin_site.admin_view(self.operate_view),
                name="{}_{}_operate".format(*info),
            ),
            path(
                "requeue-failed/",
                self.admin_site.admin_view(self.requeue_failed_view),
                name="{}_{}_requeue_failed".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """Offer the operations that apply to the job's state, as buttons (POST forms)."""
        obj = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if obj is not None and self.has_change_permission(request, obj):
            extra_context["job_operations"] = [
                (name, OPERATIONS[name].title) for name in OFFERED[obj.state]
            ]
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_requeue_failed": self.has_change_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def operate_view(self, request: HttpRequest, object_id: str, operation: str):
        """One operation on one job, from the buttons on its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, object_id)
        if obj is None or operation not in OPERATIONS:
            raise Http404(f"no {self.model._meta.verbose_name} {object_id} or {operation}")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        self._operate(request, self.get_queryset(request).filter(pk=obj.pk), operation)
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))

    def requeue_failed_view(self, request: HttpRequest):
        """Every failed job of this model back in the queue: after a fix, in one click."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        self._operate(request, self.get_queryset(request).failed(), "requeue")
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_changelist".format(*info)))

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

    @admin.display(description="progress")
    def progress_display(self, job) -> str:
        if job.progress_done is None:
            return "-"
        if not job.progress_total:
            return f"{job.progress_done} done"
        percent = 100 * job.progress_done // job.progress_total
        return format_html(
            '<progress class="job-progress" value="{}" max="{}"></progress> {} of {} ({}%)',
            job.progress_done,
            job.progress_total,
            job.progress_done,
            job.progress_total,
            percent,
        )

    @admin.display(description="log of the latest attempt")
    def log_display(self, job) -> str:
        if not job.log:
            return "-"
        return format_html('<pre class="job-log" style="white-space:pre-wrap">{}</pre>', job.log)

    @admin.display(description="operator actions")
    def operator_history(self, job) -> str:
        """Who did what to this job from the admin, newest first (Django's admin log)."""
        entries = (
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(job, for_concrete_model=False),
                object_id=str(job.pk),
            )
            .select_related("user")
            .order_by("-action_time")[:HISTORY_SHOWN]
        )
        if not entries:
            return "-"
        return format_html(
            '<ol class="job-audit">{}</ol>',
            format_html_join(
                "",
                "<li>{} by {}: {}</li>",
                (
                    (
                        f"{entry.action_time:%Y-%m-%d %H:%M:%S}",
                        entry.user,
                        entry.get_change_message(),
                    )
                    for entry in entries
                ),
            ),
        )

    @admin.display(description="sensitive fields")
    def sensitive_display(self, job) -> str:
        """Names only: the values are secrets, set where the job is created, never shown."""
        return format_html_join(
            "",
            "<div>{}: {}</div>",
            (
                (job._meta.get_field(name).verbose_name, MASK if getattr(job, name) else "-")
                for name in job.sensitive_fields
            ),
        )

    @admin.action(description="Requeue selected failed or cancelled jobs", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._operate(request, queryset, "requeue")

    @admin.action(
        description="Cancel selected jobs (running ones are asked to stop)", permissions=["change"]
    )
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._operate(request, queryset, "cancel")

    @admin.action(description="Retry selected scheduled jobs now", permissions=["change"])
    def retry_now_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._operate(request, queryset, "retry_now")

    @admin.action(description="Run selected jobs now, here (debugging)", permissions=["change"])
    def run_now_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._operate(request, queryset, "run_now")

    def _operate(self, request: HttpRequest, queryset: QuerySet, name: str) -> None:
        """Apply an operation and say what it changed and what it skipped.

        Counted before the change: the selection carries the changelist's filters, which
        the changed rows may no longer match.
        """
        operation = OPERATIONS[name]
        selected = queryset.count()
        moves = operation(request.user, queryset)
        changed = len(moves)
        message = f"{changed} job{'s' if changed != 1 else ''} {operation.done}"
        if asked := sum(1 for _, to in moves if to == "asked to stop"):
            message += f" ({asked} running, asked to stop)"
        if outcomes := Counter(to for _, to in moves if name == "run_now"):
            message += f" ({', '.join(f'{n} {to}' for to, n in sorted(outcomes.items()))})"
        message += "."
        if skipped := selected - changed:
            message += (
                f" {skipped} skipped: only {operation.applies_to} jobs can be {operation.done}."
            )
        self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)


def _masked_column(name: str):
    """A changelist column that shows that a sensitive field is set, never its value."""

    @admin.display(description=name.replace("_", " "))
    def masked(job) -> str:
        return MASK if getattr(job, name) else "-"

    return masked


# The clock's heartbeats: each row's wait (started minus run at) is one sample of its
# queue's latency, so an operator can see when a queue fell behind.
admin.site.register(Heartbeat, JobAdmin)


@admin.register(TaskJob)
class TaskJobAdmin(JobAdmin):
    """Calls of `@task` functions (Django's Tasks API): which function, with what, and what
    it returned."""

    list_display = (*JobAdmin.list_display, "task_path")
    list_filter = (*JobAdmin.list_filter, "task_path")
    search_fields = ("=id", "task_path")


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
