"""The example's one task written with Django's Tasks API (`@task`), rather than as a job
model: a small, read-only follow-up that needs no table of its own."""

from django.apps import apps

from jobs.contrib.tasks.api import task
from project.instances import provider


@task()
def check_reachable(instance_id: int) -> dict:
    """Ask the provider whether a freshly provisioned instance answers at its address;
    the answer is the task's result, readable with `check_reachable.get_result(id)`."""
    instance = apps.get_model("instances", "Instance").objects.get(pk=instance_id)
    return {
        "instance": instance.name,
        "ip_address": instance.ip_address,
        "reachable": provider.answers_at(instance.provider_id, instance.ip_address),
    }
