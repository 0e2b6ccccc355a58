"""The framework's own job models in the admin: latency probes here, tasks in
`jobs.contrib.tasks.admin`."""

from __future__ import annotations

from django.contrib import admin
from django.http import (
    HttpRequest,
)

from jobs.admin.jobs import JobAdmin
from jobs.models import LatencyProbe


class FrameworkJobAdmin(JobAdmin):
    """The framework's own job models (latency probes, tasks): rows only the framework writes.

    Shown only in a project that uses them (`jobs.models.discovery.served_models()`, read on each
    request, so a settings change shows at once), and never added by hand: a probe is
    the clock's, a task row is written by `@task(...).enqueue()`.
    """

    def in_use(self) -> bool:
        try:
            return self.model.in_use()
        except ValueError:  # JOBS_QUEUES is unusable: show the rows; `manage.py check` says why
            return True

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.in_use() and super().has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.in_use() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.in_use() and super().has_delete_permission(request, obj)


# The clock's latency probes: each row's wait (started minus run at) is one sample of its
# queue's latency, so an operator can see when a queue fell behind.
admin.site.register(LatencyProbe, FrameworkJobAdmin)
