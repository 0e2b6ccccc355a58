from django.contrib import admin

from jobs.admin import JobAdmin
from project.instances.models import FleetReport, Instance, InstanceProvision, IpAttachment


@admin.register(InstanceProvision, IpAttachment)
class InstanceJobAdmin(JobAdmin):
    """The jobs of one instance (its provision, its address attachment), found by its name."""

    list_display = (*JobAdmin.list_display, "instance")
    list_select_related = ("instance",)
    search_fields = ("=id", "instance__name")
    raw_id_fields = ("instance",)


@admin.register(FleetReport)
class FleetReportAdmin(JobAdmin):
    list_display = (*JobAdmin.list_display, "summary")


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "state", "provider_id", "ip_address", "created_at")
    list_filter = ("state",)
    search_fields = ("name", "provider_id")
