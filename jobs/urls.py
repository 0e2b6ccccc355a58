"""The jobs app's own URLs, for a project to include: `path("jobs/", include("jobs.urls"))`.

The admin pages (dashboard, job pages) are not here: they live on the admin site.
"""

from django.urls import path

from jobs.views import health, metrics, status

urlpatterns = [
    path("health/", health.health, name="jobs-health"),
    path("metrics/", metrics.metrics, name="jobs-metrics"),
    path("status/<str:label>/<str:pk>/", status.status, name="jobs-status"),
]
