"""`manage.py demo`: enqueue a few provisions, drain them with the worker, show what happened.

Each instance is two jobs: its provision, and the address attachment that waits for it
(`enqueue(after=...)`); cancelling a provision cancels the attachment waiting on it. The
good names are requested as one fleet, a batch whose report runs once all its jobs ended.
"""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.management.commands.runjobs import require_tables
from jobs.models import JobState
from project.instances.models import FleetReport, InstanceProvision, IpAttachment
from project.instances.services import request_fleet, request_instance

GOOD_NAMES = ("web-1", "web-2", "db-1")
INVALID_NAME = "Bad_Name!"  # the provider refuses it: shows a failure and its retry
CANCELLED_NAME = "cache-1"  # cancelled before a worker gets to it


class Command(BaseCommand):
    help = "Enqueue example provisioning jobs, run the worker until they are done, print a report."

    def handle(self, *args, **options) -> None:
        require_tables([InstanceProvision, IpAttachment, FleetReport])
        report = request_fleet(GOOD_NAMES)
        jobs = [request_instance(name) for name in (INVALID_NAME, CANCELLED_NAME)]
        jobs[-1].cancel()
        jobs = [*InstanceProvision.objects.filter(instance__name__in=GOOD_NAMES), *jobs]
        self.stdout.write(
            f"Enqueued {len(jobs)} provisions ({', '.join(j.instance.name for j in jobs)}), "
            f"the first {len(GOOD_NAMES)} as one fleet with a report when all are done; "
            f"cancelled {CANCELLED_NAME} before any worker saw it (and so the address "
            "attachment waiting on it).\n"
            "Running the worker until nothing is runnable (runjobs --burst):"
        )
        call_command("runjobs", "--burst")
        self.stdout.write("")
        self.stdout.write(f"{'job':<32} {'state':<10} {'attempts':<9} result")
        for job in InstanceProvision.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"):
            for step in (job, *job.instance.ip_attachments.all()):
                attempts = f"{step.attempts} of {step.max_attempts}"
                self.stdout.write(
                    f"{step.label:<32} {step.state:<10} {attempts:<9} {_result(step)}"
                )
        report.refresh_from_db()
        self.stdout.write(f"{report.label:<32} {report.state:<10} {'':<9} {report.summary}")
        self.stdout.write(
            "\nInspect them in the admin (python manage.py createsuperuser; runserver; /admin/)."
        )


def _result(job: InstanceProvision | IpAttachment) -> str:
    instance = job.instance
    if job.state == JobState.SUCCEEDED and isinstance(job, InstanceProvision):
        return f"{instance.name} booted ({instance.provider_id})"
    if job.state == JobState.SUCCEEDED:
        return f"{instance.name} ready at {instance.ip_address}"
    if job.state == JobState.WAITING:
        return f"{instance.name}: waits for its provision to succeed"
    if job.error_type:
        retry = f"; retry at {job.run_at:%H:%M:%S}" if job.state == JobState.PENDING else ""
        return f"{job.error_type}: {job.error_message}{retry}"
    return f"{instance.name}: {job.state}"
