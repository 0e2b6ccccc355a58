"""The jobs app's own URLs, for a project to include: `path("jobs/", include("jobs.urls"))`.

The admin pages (dashboard, job pages) are not here: they live on the admin site.
"""

from django.urls import path

from jobs import health_view, http, metrics_view

urlpatterns = [
    path("health/", health_view.health, name="jobs-health"),
    path("metrics/", metrics_view.metrics, name="jobs-metrics"),
    path("status/<str:label>/<str:pk>/", http.status, name="jobs-status"),
]
