from django.contrib import admin
from django.urls import include, path

from project.instances import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("jobs/", include("jobs.urls")),
    path("instances/", views.create_instance, name="instance-create"),
    path("instances/<int:pk>/", views.instance_detail, name="instance-detail"),
]
