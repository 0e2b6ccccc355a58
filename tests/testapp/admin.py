"""The test jobs in the admin, one of them listing a sensitive field to prove it is masked."""

from django.contrib import admin

from jobs.admin import JobAdmin
from tests.testapp.models import StepJob, UniqueJob


@admin.register(StepJob)
class StepJobAdmin(JobAdmin):
    list_display = (*JobAdmin.list_display, "steps", "api_token")


admin.site.register(UniqueJob, JobAdmin)
