"""HTTP API of the example: ask for an instance (202 Accepted), then follow its provisioning.

`POST /instances/` answers `202 Accepted` with the `Location` of the provisioning job's status
resource (jobs.views.status), which sends the caller on to `GET /instances/<id>/` (303) once the
instance is ready. `Expect: 200-ok` provisions in the request instead.
"""

from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from jobs.views.status import Expectation, ExpectationFailed
from project.instances.models import Instance, InstanceProvision, IpAttachment


class InstanceRequestForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        error_messages={"invalid": "Use lowercase letters, digits and hyphens (at most 63)."},
    )


@require_POST
def create_instance(request: HttpRequest) -> HttpResponse:
    """Create the instance and start its provisioning in one transaction.

    Either both are committed or neither: no worker ever provisions an instance that was
    rolled back, and no instance is left without its job. The `Expect` header is read first,
    so a refused expectation (417) creates nothing.
    """
    try:
        expect = Expectation.read(request, InstanceProvision)
    except ExpectationFailed as refused:
        return refused.response
    form = InstanceRequestForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    with transaction.atomic():
        instance = Instance.objects.create(name=form.cleaned_data["name"])
        provision = expect.start(InstanceProvision.objects.create(instance=instance))
        IpAttachment.objects.create(instance=instance).enqueue(after=[provision])
    return expect.respond(
        provision,
        instance=instance.pk,
        instance_url=reverse("instance-detail", args=[instance.pk]),
        admin_url=reverse("admin:instances_instanceprovision_change", args=[provision.pk]),
    )


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
            "ip_attachments": [
                {"job": job.pk, "state": job.state, "attempts": job.attempts}
                for job in instance.ip_attachments.order_by("pk")
            ],
        }
    )
