"""HTTP API of the example: ask for an instance (202 Accepted), then follow its provisioning."""

from django import forms
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from project.instances.models import Instance
from project.instances.services import request_instance


class InstanceRequestForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        error_messages={"invalid": "Use lowercase letters, digits and hyphens (at most 63)."},
    )


@require_POST
def create_instance(request: HttpRequest) -> JsonResponse:
    form = InstanceRequestForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    provision = request_instance(form.cleaned_data["name"])
    status_url = reverse("instance-detail", args=[provision.instance_id])
    response = JsonResponse(
        {
            "instance": provision.instance_id,
            "job": provision.pk,
            "state": provision.state,
            "status_url": status_url,
            "admin_url": reverse("admin:instances_instanceprovision_change", args=[provision.pk]),
        },
        status=202,
    )
    response["Location"] = status_url
    return response


@require_GET
def instance_detail(request: HttpRequest, pk: int) -> JsonResponse:
    instance = get_object_or_404(Instance, pk=pk)
    return JsonResponse(
        {
            "instance": instance.pk,
            "name": instance.name,
            "state": instance.state,
            "provider_id": instance.provider_id,
            "ip_address": instance.ip_address,
            "provisions": [
                {
                    "job": job.pk,
                    "state": job.state,
                    "attempts": job.attempts,
                    "error": job.error_message,
                }
                for job in instance.provisions.order_by("pk")
            ],
        }
    )
