"""Task rows in the admin, shown where a `TASKS` backend stores tasks here."""

from django.contrib import admin

from jobs.admin.framework import FrameworkJobAdmin
from jobs.admin.jobs import JobAdmin
from jobs.contrib.tasks.models import TaskJob


@admin.register(TaskJob)
class TaskJobAdmin(FrameworkJobAdmin):
    """Calls of `@task` functions (Django's Tasks API): which function, with what, and what
    it returned."""

    list_display = (*JobAdmin.list_display, "task_path")
    list_filter = (*JobAdmin.list_filter, "task_path")
    search_fields = ("=id", "task_path")
