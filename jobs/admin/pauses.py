"""`QueuePauseAdmin`: pause a queue (or one job model in it) from the admin; delete to resume.

Adding a row is the "pause" button: its reason, who (the admin user) and when are recorded on
the row, and the addition and the deletion (the resume) in the admin log, as Django logs any
change. Each save or delete tells the workers at once (`QueuePause.announce`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.models import QueuePause
from jobs.models.discovery import job_models

EVERY_MODEL = ("", "every job model")


class QueuePauseForm(forms.ModelForm):
    """The model is chosen among the job models (their concrete labels, which workers
    compare), so a typo cannot pause nothing."""

    model = forms.ChoiceField(required=False, help_text="Leave empty to pause every job model.")

    class Meta:
        model = QueuePause
        fields = ("queue", "model", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "model" in self.fields:  # not on a change: queue and model are then read-only
            labels = sorted({model._meta.concrete_model._meta.label for model in job_models()})
            self.fields["model"].choices = [EVERY_MODEL, *((label, label) for label in labels)]


@admin.register(QueuePause)
class QueuePauseAdmin(admin.ModelAdmin):
    form = QueuePauseForm
    list_display = ("queue", "paused_model", "reason", "paused_by", "paused_at")
    list_display_links = ("queue",)
    search_fields = ("queue", "model", "reason", "paused_by")
    readonly_fields = ("paused_by", "paused_at")

    @admin.display(description="model", ordering="model")
    def paused_model(self, pause: QueuePause) -> str:
        return pause.model or "every job model"

    def get_readonly_fields(self, request: HttpRequest, obj: QueuePause | None = None) -> tuple:
        """Queue and model are the pause's identity: to pause another, add a row."""
        if obj is not None:
            return ("queue", "model", *self.readonly_fields)
        return self.readonly_fields

    def get_fields(self, request: HttpRequest, obj: QueuePause | None = None) -> tuple:
        if obj is None:
            return ("queue", "model", "reason")
        return ("queue", "model", "reason", "paused_by", "paused_at")

    def save_model(
        self, request: HttpRequest, obj: QueuePause, form: forms.ModelForm, change: bool
    ) -> None:
        if not change:
            obj.paused_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        obj.announce()

    def delete_model(self, request: HttpRequest, obj: QueuePause) -> None:
        super().delete_model(request, obj)
        obj.announce()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        queues = set(queryset.values_list("queue", flat=True))
        super().delete_queryset(request, queryset)
        for queue in queues:
            QueuePause(queue=queue).announce(using=queryset.db)
