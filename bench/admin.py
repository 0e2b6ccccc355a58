"""W7's job models in the admin only where a worker serves them (`BenchJob.in_use`).

Unregistered, a superuser's dashboard would list them in every project that installs `bench`,
and the dashboard benchmark (`bench.dashboard`) would pay a query per model for two empty
tables it does not measure. The framework's own admin for job models it owns does exactly
this gating (shown only when in use, never added by hand).
"""

from django.contrib import admin

from bench.models import KeyedNoopJob, LimitedNoopJob
from jobs.admin.framework import FrameworkJobAdmin

for model in (KeyedNoopJob, LimitedNoopJob):
    admin.site.register(model, FrameworkJobAdmin)
