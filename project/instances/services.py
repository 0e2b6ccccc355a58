"""What the web view and the demo share: ask for an instance and its provisioning."""

from django.db import transaction

from project.instances.models import Instance, InstanceProvision


def request_instance(name: str) -> InstanceProvision:
    """Create the instance and enqueue its provisioning in one transaction.

    Either both are committed or neither: no worker ever provisions an instance that was
    rolled back, and no instance is left without its job.
    """
    with transaction.atomic():
        instance = Instance.objects.create(name=name)
        return InstanceProvision.objects.create(instance=instance).enqueue()
