"""`JobAdmin`: the admin every job model reuses to inspect, filter and act on its jobs.

Lifecycle fields are read-only here; the actions go through the same guarded verbs as the
shell (`jobs.admin.operations`), so the admin cannot put a row into an impossible state, and every
change an operator makes is in Django's admin log, shown on the job's page. An operation on
more than one job (requeue or cancel a selection, requeue all failed) asks first, on a page
that says how many jobs it would touch; nothing changes until that page is submitted.

A job that waits on other jobs, or that others wait on, or in a batch, has a "Workflow"
section on its page (`jobs.admin.workflows`). A job model that declares flow controls
(`unique_on`, concurrency and rate limits) or whose queue is paused has a "Flow control"
panel above its list (`jobs.admin.flow`).

The job lists and the workers page are laid out for a 1280 px screen: compact times, no
navigation sidebar (`nav_sidebar`), so every column shows without scrolling sideways.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from django.contrib import admin, messages
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import PermissionDenied
from django.db.models import CharField, DurationField, ExpressionWrapper, F, QuerySet, TextField
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from jobs import timesource
from jobs.admin.columns import JobColumns, masked_column
from jobs.admin.display import (
    ACTIVITY_FIELDS,
    BUTTON_STYLES,
    CONFIRM_LISTED,
    CONFIRMED,
    CONFIRMED_ALWAYS,
    ERROR_FIELDS,
    STYLESHEETS,
    TIMELINE_FIELDS,
    live,
)
from jobs.admin.filters import (
    ErrorTypeFilter,
    FinishedWithinFilter,
    MemoryGrowthFilter,
    WorkerFilter,
)
from jobs.admin.flow import flow_control, job_flow_line
from jobs.admin.moving import MoveAction
from jobs.admin.operations import OPERATIONS, offered
from jobs.admin.stacks import StackView
from jobs.admin.workflows import workflow_lines
from jobs.db.limits import limits_of
from jobs.models import Job, JobState
from jobs.models.job import LIFECYCLE_FIELDS
from jobs.models.options import ROW_OPTIONS


class JobAdmin(JobColumns, MoveAction, StackView, admin.ModelAdmin):
    """Base admin for job models. Subclass it to add columns, or `search_fields` beyond the
    model's own text fields (related ones: `"instance__name"`).

    A subclass that adds columns to `list_display` should keep them few and narrow: the
    lifecycle columns take about 820 px of the 980 px a 1280 px screen leaves the table.
    """

    list_display = (
        "id",
        "state_badge",
        "queue_display",
        "attempts_display",
        "requested",
        "finished",
        "wait_time",
        "run_time",
        "error_summary",
    )
    list_filter = (
        "state",
        ("queue", admin.AllValuesFieldListFilter),
        WorkerFilter,
        FinishedWithinFilter,
        ErrorTypeFilter,
        MemoryGrowthFilter,
    )
    readonly_fields = (
        *TIMELINE_FIELDS,
        *ERROR_FIELDS,
        *ACTIVITY_FIELDS,
        "sensitive_display",
        "flow_control_display",
        "workflow_display",
        "stack_display",
    )
    actions = (
        "enqueue_jobs",
        "requeue_jobs",
        "cancel_jobs",
        "retry_now_jobs",
        "move_jobs",
        "kill_jobs",
        "run_now_jobs",
    )
    date_hierarchy = "requested_at"
    # A table of a million finished rows is counted once per page, not twice.
    show_full_result_count = False
    change_form_template = "admin/jobs/job_change_form.html"
    change_list_template = "admin/jobs/job_change_list.html"
    # The admin's navigation sidebar on the job list: off, because its 300 px are what the
    # columns need on a 1280 px screen. True puts it back (the list then scrolls sideways).
    nav_sidebar = False

    class Media:
        css: ClassVar[dict] = STYLESHEETS

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
        queueing = list(ROW_OPTIONS)
        if obj is not None and limits_of(self.model) is not None:
            queueing.append("flow_control_display")
        fieldsets = [(None, {"fields": domain}), ("Queueing", {"fields": queueing})]
        # What happened, read-only: the parts a live page refreshes (`fieldset.job-live`).
        shown = {"classes": ("job-live",)}
        if obj is not None:  # always there, so a live page keeps its shape as the job runs
            fieldsets.append(("Where it is now", {**shown, "fields": ["stack_display"]}))
        if obj is not None and self.workflow_display(obj):
            fieldsets.append(("Workflow", {**shown, "fields": ["workflow_display"]}))
        if obj is not None:
            fieldsets.append(("Lifecycle", {**shown, "fields": list(TIMELINE_FIELDS)}))
            fieldsets.append(("Last error", {**shown, "fields": list(ERROR_FIELDS)}))
            fieldsets.append(("Activity", {**shown, "fields": list(ACTIVITY_FIELDS)}))
        return fieldsets

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        """Search by id, by the model's own text fields and by error text, and by whatever
        a subclass adds (`search_fields = ("instance__name",)`). Sensitive fields are never
        searched: which rows match would tell a secret."""
        sensitive = set(self.model.sensitive_fields)
        own = [
            field.name
            for field in self.model._meta.concrete_fields
            if isinstance(field, CharField | TextField)
            and not field.choices
            and field.name not in LIFECYCLE_FIELDS
            and field.name not in ROW_OPTIONS
            and field.name not in sensitive
        ]
        fields = [f"={self.model._meta.pk.name}", *own, "error_type", "error_message"]
        return list(dict.fromkeys([*fields, *self.search_fields]))

    def get_list_display(self, request: HttpRequest) -> list:
        """A sensitive field a subclass lists shows as a mask."""
        return [
            masked_column(name) if name in self.model.sensitive_fields else name
            for name in super().get_list_display(request)
        ]

    def get_urls(self) -> list:
        info = self._info()
        return [
            path(
                "<path:object_id>/operate/<str:operation>/",
                self.admin_site.admin_view(self.operate_view),
                name="{}_{}_operate".format(*info),
            ),
            path(
                "<path:object_id>/stack/",
                self.admin_site.admin_view(self.request_stack_view),
                name="{}_{}_stack".format(*info),
            ),
            path(
                "requeue-failed/",
                self.admin_site.admin_view(self.requeue_failed_view),
                name="{}_{}_requeue_failed".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """Offer the operations that apply to the job as it is now, as buttons (POST forms):
        Retry now only while it is scheduled, Cancel only until a stop has been requested."""
        obj = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if obj is not None:
            extra_context["live"] = live("job", "#job-operations, fieldset.job-live", default=False)
            extra_context["job_state"] = self.state_badge(obj, wrap=False)
            extra_context["job_running"] = obj.state == JobState.RUNNING
            if self.has_change_permission(request, obj):
                extra_context["job_operations"] = [
                    (name, OPERATIONS[name].title, BUTTON_STYLES.get(name, "default"))
                    for name in offered(obj, timesource.now())
                ]
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_requeue_failed": self.has_change_permission(request),
        }
        if not self.nav_sidebar:
            extra_context["is_nav_sidebar_enabled"] = False
        extra_context["flow_control"] = flow_control(
            self.model._base_manager.all(),
            change_url=lambda pk: self._url("change", pk),
            changelist_url=self._url("changelist"),
            pauses_url=self._pauses_url(request),
        )
        return super().changelist_view(request, extra_context)

    @admin.display(description="flow control")
    def flow_control_display(self, job: Job) -> str:
        """The job's key under its model's limits, and its slot while it runs."""
        return job_flow_line(job)

    @admin.display(description="jobs")
    def workflow_display(self, job: Job) -> str:
        """The jobs it waits on, the jobs waiting on it and its batch (`jobs.admin.workflows`),
        read once per page."""
        if getattr(job, "_workflow_lines", None) is None:
            job._workflow_lines = workflow_lines(job, self.admin_site.name)
        return job._workflow_lines

    def _pauses_url(self, request: HttpRequest) -> str:
        """The pauses' list on this admin site, or "" where they are not registered or the
        user may not see them."""
        if not request.user.has_perm("jobs.view_queuepause"):
            return ""
        try:
            return reverse(f"{self.admin_site.name}:jobs_queuepause_changelist")
        except NoReverseMatch:
            return ""

    def operate_view(self, request: HttpRequest, object_id: str, operation: str):
        """One operation on one job, from the buttons on its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, object_id)
        if obj is None or operation not in OPERATIONS:
            raise Http404(f"no {self.model._meta.verbose_name} {object_id} or {operation}")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        rows = self.get_queryset(request).filter(pk=obj.pk)
        if operation in CONFIRMED_ALWAYS and request.POST.get("post") != "yes":
            title = f"{OPERATIONS[operation].title} {obj}?"
            return self.confirm_operation(
                request, operation, rows, 1, title=title, hidden=[], back_url=self.change_url(obj)
            )
        self._operate(request, rows, operation)
        return HttpResponseRedirect(self.change_url(obj))

    def requeue_failed_view(self, request: HttpRequest) -> HttpResponse:
        """Every failed job of this model back in the queue, after a fix: GET asks (how many,
        which), POST does it."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        failed = self.get_queryset(request).failed()
        if request.method == "GET":
            count = failed.count()
            name = model_ngettext(self.opts, count)
            if not count:
                title = f"No failed {name}"
            else:
                title = f"Requeue {'the' if count == 1 else f'all {count}'} failed {name}?"
            return self.confirm_operation(
                request,
                "requeue",
                failed.order_by("-finished_at", "-pk"),
                count,
                title=title,
                hidden=[],
                back_url=self._url("changelist"),
            )
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        self._operate(request, failed, "requeue")
        return HttpResponseRedirect(self._url("changelist"))

    def confirm_operation(
        self,
        request: HttpRequest,
        name: str,
        jobs: QuerySet,
        count: int,
        *,
        title: str,
        hidden: list[tuple[str, str]],
        back_url: str,
    ) -> TemplateResponse:
        """The page that asks before operation `name` touches `count` jobs.

        It names the first `CONFIRM_LISTED` of `jobs` with their state and error, and posts
        `hidden` (plus `post=yes`) back to the URL it was drawn for; "No" goes to `back_url`.
        """
        operation = OPERATIONS[name]
        listed = [
            (job, self.change_url(job), self.state_badge(job, wrap=False), self.error_summary(job))
            for job in jobs[:CONFIRM_LISTED]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "media": self.media,
            # Strings, not the Operation: a template would call it (it is callable).
            "operation_title": operation.title,
            "applies_to": operation.applies_to,
            "effect": operation.effect,
            "count": count,
            "listed": listed,
            "unlisted": count - len(listed),
            "hidden": hidden,
            "back_url": back_url,
            "confirm": f"Yes, {operation.title.lower()} {'them' if count > 1 else 'it'}",
            "confirm_style": BUTTON_STYLES.get(name, "default"),
        }
        return TemplateResponse(request, "admin/jobs/job_confirm_operation.html", context)

    def change_url(self, job: Job) -> str:
        return self._url("change", job.pk)

    def _url(self, view: str, *args: object) -> str:
        """This model's admin page `view` on the site it is registered on."""
        app_label, model_name = self._info()
        return reverse(f"{self.admin_site.name}:{app_label}_{model_name}_{view}", args=args)

    def _info(self) -> tuple[str, str]:
        return self.model._meta.app_label, self.model._meta.model_name

    @admin.action(description="Enqueue selected new jobs", permissions=["change"])
    def enqueue_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "enqueue")

    @admin.action(description="Requeue selected failed or cancelled jobs…", permissions=["change"])
    def requeue_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "requeue")

    @admin.action(
        description="Cancel selected jobs (running ones are asked to stop)…",
        permissions=["change"],
    )
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "cancel")

    @admin.action(description="Retry selected scheduled jobs now", permissions=["change"])
    def retry_now_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "retry_now")

    @admin.action(
        description="Kill selected running jobs (restarts their workers)…",
        permissions=["change"],
    )
    def kill_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "kill")

    @admin.action(description="Run selected jobs now, here (debugging)", permissions=["change"])
    def run_now_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._act(request, queryset, "run_now")

    def _act(self, request: HttpRequest, queryset: QuerySet, name: str) -> HttpResponse | None:
        """Apply operation `name` to the selection, as an admin action; one of `CONFIRMED`
        on more than one job first asks, on a page like Django's delete confirmation that
        posts the same request back with `post=yes` (None: back to the changelist)."""
        if name not in CONFIRMED or request.POST.get("post") == "yes":
            self._operate(request, queryset, name)
            return None
        if (count := queryset.count()) <= 1 and name not in CONFIRMED_ALWAYS:
            self._operate(request, queryset, name)
            return None
        operation = OPERATIONS[name]
        hidden = [
            (key, value)
            for key, values in request.POST.lists()
            if key not in ("csrfmiddlewaretoken", "post")
            for value in values
        ]
        return self.confirm_operation(
            request,
            name,
            queryset.order_by("-pk"),
            count,
            title=f"{operation.title} {count} selected {model_ngettext(self.opts, count)}?",
            hidden=hidden,
            back_url=request.get_full_path(),  # the changelist, as filtered
        )

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
                f" {skipped} skipped: only {operation.applies_to} jobs can be {operation.done}"
            )
            if queryset.model.unique_on and name in ("enqueue", "requeue"):
                message += ", and not while a job with the same key is pending or running"
            message += "."
        self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)
