"""Move: pending jobs to another queue and/or priority, from the admin's changelist.

An action with a form: select jobs (or every job the changelist's filters show, with
"Select all"), choose "Move selected jobs…", then say the queue, the priority or both. The
page keeps the selection (the ids, or "all" and the filters in its URL), so nothing is
moved until the form is valid and posted. Each moved job gets an entry in the admin log
("Move: queue default, priority 0 → queue big, priority 0"), as every operation does
(`jobs.admin.operations`); only pending and waiting jobs move.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from jobs.admin.operations import moving
from jobs.models.discovery import queues_with_defaults
from jobs.states import MOVABLE_STATES, JobState
from jobs.validation import PRIORITY_MAX, PRIORITY_MIN, validate_queue_name

# Jobs the form page names one by one; it counts the rest.
MOVE_LISTED = 10


class MoveForm(forms.Form):
    """Where to: a queue, a priority, or both; blank keeps each job's own."""

    queue = forms.CharField(
        required=False,
        max_length=100,
        help_text="Leave blank to keep each job's queue.",
        widget=forms.TextInput(attrs={"list": "job-move-queues", "autofocus": True}),
    )
    priority = forms.IntegerField(
        required=False,
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        help_text=f"Higher runs first ({PRIORITY_MIN} to {PRIORITY_MAX}); blank keeps each job's.",
    )

    def clean_queue(self) -> str | None:
        queue = self.cleaned_data["queue"].strip()
        if not queue:
            return None
        try:
            return validate_queue_name(queue)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("queue") is None and cleaned.get("priority") is None and not self.errors:
            raise forms.ValidationError("Say where to: a queue, a priority, or both.")
        return cleaned


class MoveAction:
    """The "Move selected jobs…" action of `JobAdmin`."""

    @admin.action(
        description="Move selected pending jobs to another queue or priority…",
        permissions=["change"],
    )
    def move_jobs(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = MoveForm(request.POST if "apply_move" in request.POST else None)
        if form.is_bound and form.is_valid():
            queue, priority = form.cleaned_data["queue"], form.cleaned_data["priority"]
            selected = queryset.count()
            moved = len(moving(queue, priority)(request.user, queryset))
            message = f"{moved} job{'s' if moved != 1 else ''} moved."
            if skipped := selected - moved:
                message += f" {skipped} skipped: only pending or waiting jobs can be moved."
            self.message_user(request, message, messages.SUCCESS if moved else messages.WARNING)
            return None
        return self._move_page(request, queryset, form)

    def _move_page(
        self, request: HttpRequest, queryset: QuerySet, form: MoveForm
    ) -> TemplateResponse:
        movable = queryset.filter(state__in=MOVABLE_STATES)
        count, selected = movable.count(), queryset.count()
        hidden = [
            (key, value)
            for key, values in request.POST.lists()
            if key in ("action", "index", "select_across", helpers.ACTION_CHECKBOX_NAME)
            for value in values
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Move {count} {'job' if count == 1 else 'jobs'}",
            "opts": self.opts,
            "media": self.media,
            "form": form,
            "count": count,
            "skipped": selected - count,
            "listed": [
                (job, self.change_url(job), job.queue, job.priority)
                for job in movable.order_by("-priority", "run_at", "pk")[:MOVE_LISTED]
            ],
            "unlisted": max(0, count - MOVE_LISTED),
            "queues": sorted(queues_with_defaults() | self._pending_queues()),
            "hidden": hidden,
            "back_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/jobs/job_move.html", context)

    def _pending_queues(self) -> set[str]:
        """The queues this model's pending rows are on (read from the pending index)."""
        pending = self.model._base_manager.filter(state=JobState.PENDING)
        return set(pending.values_list("queue", flat=True).distinct())
