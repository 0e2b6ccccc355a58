"""The job lists' own filters: by worker process, by when a job finished, by error type, and
the jobs with a memory growth on record, the largest first."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
)

from jobs import timesource
from jobs.admin.display import FINISHED_WINDOWS
from jobs.identity import claimed_by_process
from jobs.models import JobState, Worker

# Error types the filter offers, alphabetically; a longer list is not a filter any more.
ERROR_TYPES_OFFERED = 30


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
            return queryset.filter(finished_at__gte=timesource.now() - window[1])
        return queryset


class ErrorTypeFilter(admin.SimpleListFilter):
    """Jobs whose latest error is of one type ("which jobs hit this?"), the dashboard's
    "failed in the last hour by error type" links included.

    Offers the types of the jobs that failed for good in the last week and of the pending
    ones retrying, each read through a partial index, not every error ever recorded.
    """

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        rows = model_admin.model._base_manager.exclude(error_type="")
        week_ago = timesource.now() - timedelta(days=7)
        recent = rows.filter(
            Q(state=JobState.FAILED, finished_at__gte=week_ago) | Q(state=JobState.PENDING)
        )
        types = recent.values_list("error_type", flat=True).distinct().order_by("error_type")
        return [(name, name) for name in types[:ERROR_TYPES_OFFERED]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(error_type=self.value())
        return queryset


class MemoryGrowthFilter(admin.SimpleListFilter):
    """The jobs whose latest attempt recorded a memory growth, the largest first: where the
    dashboard's memory growth ranking opens a job model's list.

    A filter that also orders, because the changelist sorts only by its columns (`?o=` is a
    column's place) and `memory_growth_kb` is none of them: the lifecycle columns leave no
    room for another. The changelist keeps a filter's ordering as long as nothing comes
    before it: no `?o=` (a column header clicked sorts by that column first) and no
    `ordering` on the `JobAdmin` subclass.
    """

    title = "memory growth"
    parameter_name = "memory_growth"
    LARGEST_FIRST = "largest"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(self.LARGEST_FIRST, "recorded, largest first")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == self.LARGEST_FIRST:
            return queryset.exclude(memory_growth_kb=None).order_by("-memory_growth_kb")
        return queryset
