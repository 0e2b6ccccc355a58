"""`manage.py prunejobs`: delete finished job rows past their retention, in small batches."""

import argparse

from django.core.management.base import BaseCommand

from jobs.cli.arguments import positive_number
from jobs.models import Batch, JobQuerySet
from jobs.models.discovery import job_models


class Command(BaseCommand):
    help = "Delete finished job rows older than JOBS_RETENTION (or the model's own retention)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--batch",
            type=positive_number("rows", whole=True),
            default=1000,
            metavar="ROWS",
            help="Rows deleted per statement (default: 1000).",
        )

    def handle(self, *args, batch, **options) -> None:
        for model in job_models():
            retention = model.retention_policy()
            deleted = 0
            while pruned := JobQuerySet(model=model).prune(retention, batch=batch):
                deleted += pruned
            self.stdout.write(f"{model._meta.label}: deleted {deleted} finished row(s)")
        emptied = Batch.objects.filter(finished_at__isnull=False, edges=None).delete()[0]
        self.stdout.write(f"batches: deleted {emptied} finished batch(es) whose members are gone")
