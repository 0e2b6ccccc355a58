"""`manage.py demo`: enqueue a few provisions, drain them with the worker, show what happened."""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.management.commands.runjobs import require_tables
from jobs.models import JobState
from project.instances.models import InstanceProvision
from project.instances.services import request_instance

GOOD_NAMES = ("web-1", "web-2", "db-1")
INVALID_NAME = "Bad_Name!"  # the provider refuses it: shows a failure and its retry
CANCELLED_NAME = "cache-1"  # cancelled before a worker gets to it


class Command(BaseCommand):
    help = "Enqueue example provisioning jobs, run the worker until they are done, print a report."

    def handle(self, *args, **options) -> None:
        require_tables([InstanceProvision])
        jobs = [request_instance(name) for name in (*GOOD_NAMES, INVALID_NAME, CANCELLED_NAME)]
        jobs[-1].cancel()
        self.stdout.write(
            f"Enqueued {len(jobs)} provisions ({', '.join(j.instance.name for j in jobs)}); "
            f"cancelled {CANCELLED_NAME} before any worker saw it.\n"
            "Running the worker until nothing is runnable (runjobs --burst):"
        )
        call_command("runjobs", "--burst")
        self.stdout.write("")
        self.stdout.write(f"{'job':<32} {'state':<10} {'attempts':<9} result")
        for job in InstanceProvision.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"):
            attempts = f"{job.attempts} of {job.max_attempts}"
            self.stdout.write(f"{job.label:<32} {job.state:<10} {attempts:<9} {_result(job)}")
        self.stdout.write(
            "\nInspect them in the admin (python manage.py createsuperuser; runserver; /admin/)."
        )


def _result(job: InstanceProvision) -> str:
    instance = job.instance
    if job.state == JobState.SUCCEEDED:
        return f"{instance.name} ready at {instance.ip_address} ({instance.provider_id})"
    if job.error_type:
        retry = f"; retry at {job.run_at:%H:%M:%S}" if job.state == JobState.PENDING else ""
        return f"{job.error_type}: {job.error_message}{retry}"
    return f"{instance.name}: {job.state}"
