from django.contrib import admin

from jobs.admin import JobAdmin
from project.instances.models import Instance, InstanceProvision


@admin.register(InstanceProvision)
class InstanceProvisionAdmin(JobAdmin):
    list_display = (*JobAdmin.list_display, "instance")
    list_select_related = ("instance",)
    search_fields = ("=id", "instance__name")
    raw_id_fields = ("instance",)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "state", "provider_id", "ip_address", "created_at")
    list_filter = ("state",)
    search_fields = ("name", "provider_id")
