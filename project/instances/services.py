"""What the web view and the demo share: ask for an instance and its provisioning."""

from collections.abc import Sequence

from django.db import transaction

from jobs import batch
from project.instances.models import FleetReport, Instance, InstanceProvision, IpAttachment


def request_instance(name: str) -> InstanceProvision:
    """Create the instance and enqueue its provisioning in one transaction: the provision,
    and the address attachment to run once it has succeeded.

    Either all are committed or none: no worker ever provisions an instance that was rolled
    back, and no instance is left without its jobs.
    """
    with transaction.atomic():
        instance = Instance.objects.create(name=name)
        provision = InstanceProvision.objects.create(instance=instance).enqueue()
        IpAttachment.objects.create(instance=instance).enqueue(after=[provision])
        return provision


def request_fleet(names: Sequence[str]) -> FleetReport:
    """Request several instances as one batch, and a report on them once every job of the
    batch has ended (whether each instance came up or not); returns the report, waiting."""
    with transaction.atomic(), batch(on_finish=FleetReport(), description=_fleet(names)) as fleet:
        for name in names:
            request_instance(name)
    return fleet.on_finish()


def _fleet(names: Sequence[str]) -> str:
    return f"fleet: {', '.join(names)}"[:255]
