"""The example domain: servers a customer asks for, and the jobs that provision each one.

Provisioning is two jobs, the second enqueued to run after the first (`enqueue(after=...)`):
`InstanceProvision` creates the server and waits for it to boot, then `IpAttachment` gives it
a public address. Each can fail and retry on its own; if the server never boots, the
attachment is cancelled, naming the provision, and requeueing the provision revives it.
Instances requested together are a batch, whose `FleetReport` runs once all their jobs ended.
"""

from django.db import models, transaction
from django.urls import reverse

from jobs.models import Batch, Job, JobState
from project.instances import provider
from project.instances.tasks import check_reachable


class Instance(models.Model):
    class State(models.TextChoices):
        REQUESTED = "requested"
        BOOTING = "booting"
        BOOTED = "booted"
        READY = "ready"

    name = models.CharField(max_length=63)
    provider_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class InstanceProvision(Job):
    """Creates the instance's server at the provider and waits for it to boot.

    Re-entrant: it first looks at what the instance row already records, and the server is
    created with an idempotency token, so a re-run after a crash continues the same server
    instead of creating a second one. The address comes next, from `IpAttachment`.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="provisions")

    queue = "average_slow"
    max_attempts = 5

    def result_url(self) -> str:
        """Where the job's status resource sends a caller once the server has booted."""
        return reverse("instance-detail", args=[self.instance_id])

    def perform(self) -> None:
        instance = self.instance
        if not instance.provider_id:
            self.logger.info("creating server %r at the provider", instance.name)
            instance.provider_id = provider.create_server(
                instance.name, client_token=f"instance-{instance.pk}"
            )
            instance.state = Instance.State.BOOTING
            instance.save(update_fields=["provider_id", "state"])
        self.logger.info("waiting for %s to boot", instance.provider_id)
        provider.wait_until_ready(instance.provider_id)
        if instance.state == Instance.State.BOOTING:
            instance.state = Instance.State.BOOTED
            instance.save(update_fields=["state"])


class IpAttachment(Job):
    """Attaches a public address to the instance's booted server and makes it ready.

    Enqueued with `after=[provision]`: it waits until the server has booted. Asking the
    provider again returns the same address, so a re-run attaches nothing new.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="ip_attachments")

    queue = "average_slow"
    max_attempts = 5

    class Meta:
        verbose_name = "IP attachment"

    def result_url(self) -> str:
        return reverse("instance-detail", args=[self.instance_id])

    def perform(self) -> None:
        instance = self.instance
        if not instance.ip_address:
            instance.ip_address = provider.attach_ip(instance.provider_id)
            self.logger.info("attached %s to %s", instance.ip_address, instance.provider_id)
        instance.state = Instance.State.READY
        with transaction.atomic():
            instance.save(update_fields=["ip_address", "state"])
            check_reachable.enqueue(instance.pk)  # a Tasks API task: see tasks.py


class FleetReport(Job):
    """What became of instances requested together (`services.request_fleet`): the batch's
    `on_finish`, enqueued once every provision and address attachment in it has ended."""

    summary = models.TextField(blank=True)

    def perform(self) -> None:
        fleet = Batch.objects.finished_by(self)
        attached = [job for job in fleet.members() if isinstance(job, IpAttachment)]
        ready = sorted(job.instance.name for job in attached if job.state == JobState.SUCCEEDED)
        self.summary = (
            f"{len(ready)} of {len(attached)} instances ready ({', '.join(ready) or 'none'}); "
            f"jobs: {fleet.succeeded} succeeded, {fleet.failed} failed, "
            f"{fleet.cancelled} cancelled"
        )
        self.save(update_fields=["summary"])
        self.logger.info("fleet report: %s", self.summary)


class ProviderServer(models.Model):
    """The simulated cloud's own records (it would live at the provider, not in our database)."""

    client_token = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=63)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.provider_id

    @property
    def provider_id(self) -> str:
        return f"srv-{self.pk:06d}"
