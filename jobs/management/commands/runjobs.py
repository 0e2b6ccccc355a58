"""`manage.py runjobs`: parse options, check the ground, build a Worker, run it."""

import argparse

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Model

from jobs.errors import ConfigurationError
from jobs.models import Worker as WorkerRow
from jobs.registry import job_models, models_without_tables, queues_with_defaults
from jobs.validation import parse_queue_list
from jobs.worker import Worker


def queue_list(text: str) -> list[str]:
    try:
        return parse_queue_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds greater than 0")
    return seconds


def require_tables(models: list[type[Model]]) -> None:
    """A worker started before `migrate` should say so, not crash on its first claim."""
    if missing := models_without_tables(models):
        labels = ", ".join(model._meta.label for model in missing)
        raise CommandError(f"tables missing for {labels}: run `python manage.py migrate` first")


class Command(BaseCommand):
    help = "Run a worker: claim pending jobs of every job model and perform them."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--queues",
            type=queue_list,
            metavar="Q1,Q2",
            help="Queues to serve, first has precedence (default: all queues).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit (status 0) once nothing is runnable, instead of waiting for more.",
        )
        parser.add_argument(
            "--interval",
            type=positive_seconds,
            default=1.0,
            metavar="SECONDS",
            help="How long an idle worker sleeps between polls (default: 1).",
        )

    def handle(self, *args, queues, burst, interval, **options) -> None:
        models = job_models()
        if not models:
            raise CommandError(
                "no job models are installed: subclass jobs.models.Job in an installed app"
            )
        require_tables([*models, WorkerRow])
        for queue in sorted(set(queues or ()) - queues_with_defaults()):
            self.stderr.write(
                f"warning: no job model defaults to queue {queue!r}; only rows enqueued "
                f"to it explicitly will run"
            )
        try:
            Worker(queues=queues, models=models, interval=interval, burst=burst).run()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt:
            raise CommandError(
                "interrupted: the job in hand was left running", returncode=130
            ) from None
