"""The test jobs in the admin, one of them listing a sensitive field to prove it is masked,
and the limited ones, whose changelists show their flow controls."""

from django.contrib import admin

from jobs.admin import JobAdmin
from tests.testapp.models import LimitedJob, OrderedJob, PhasedJob, RatedJob, StepJob, UniqueJob


@admin.register(StepJob)
class StepJobAdmin(JobAdmin):
    list_display = (*JobAdmin.list_display, "steps", "api_token")


for model in (UniqueJob, LimitedJob, OrderedJob, RatedJob, PhasedJob):
    admin.site.register(model, JobAdmin)
