"""`manage.py runjobs`: parse options, check the ground, build a worker loop or a supervisor.

SIGTERM and SIGINT are taken over before any of that (`EarlyStop`, from `execute()`, so before
the system checks too): a worker stopped while it starts exits 0 without claiming anything.
(Before Django has loaded, this module is not even imported: the project's `manage.py` takes
over the signals for that first half second.)
"""

import argparse
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model

from jobs.cli.arguments import database_unreachable, positive_number, process_range, queue_list
from jobs.db import engine_for
from jobs.db.outage import CONNECTION_ERRORS
from jobs.errors import ConfigurationError
from jobs.models import Worker as WorkerRow
from jobs.models.discovery import (
    domain_models,
    models_without_tables,
    queues_with_defaults,
    served_models,
)
from jobs.runtime.autoscale import DEFAULT_SCALE_DOWN_AFTER, DEFAULT_SCALE_UP_AFTER
from jobs.runtime.budget import ConnectionBudget, check_connection_budget
from jobs.runtime.console import use_console_unless_configured
from jobs.runtime.supervisor import EarlyStop, Supervisor
from jobs.runtime.worker import DEFAULT_THREADS, EXIT_OK, EXIT_RECYCLE, WorkerLoop


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
            "--processes",
            type=process_range,
            metavar="P|MIN-MAX",
            help="Start a supervisor that keeps P worker processes running, restarting any "
            "that dies; with MIN-MAX, as many as the queues need between the two "
            "(default: this process is the one worker).",
        )
        parser.add_argument(
            "--scale-up-after",
            type=positive_number("seconds"),
            default=DEFAULT_SCALE_UP_AFTER,
            metavar="SECONDS",
            help="With --processes MIN-MAX: add a process while the oldest runnable job has "
            "waited longer than this, or than its queue's SLA if shorter "
            f"(default: {DEFAULT_SCALE_UP_AFTER:g}).",
        )
        parser.add_argument(
            "--scale-down-after",
            type=positive_number("seconds"),
            default=DEFAULT_SCALE_DOWN_AFTER,
            metavar="SECONDS",
            help="With --processes MIN-MAX: stop an idle process once no job has waited for "
            f"this long (default: {DEFAULT_SCALE_DOWN_AFTER:g}).",
        )
        parser.add_argument(
            "--threads",
            type=positive_number("threads", whole=True),
            default=DEFAULT_THREADS,
            metavar="T",
            help="Jobs each worker process runs at once, one per thread "
            f"(default: {DEFAULT_THREADS}).",
        )
        parser.add_argument(
            "--no-clock",
            dest="clock",
            action="store_false",
            help="Do not run the clock (JOBS_SCHEDULE and latency probes) in this worker. Any "
            "number of workers may run it; each slot is still enqueued once.",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit (status 0) once nothing is runnable, instead of waiting for more.",
        )
        parser.add_argument(
            "--interval",
            type=positive_number("seconds"),
            default=1.0,
            metavar="SECONDS",
            help="How long an idle worker sleeps between polls (default: 1).",
        )
        parser.add_argument(
            "--grace",
            type=positive_number("seconds"),
            default=30.0,
            metavar="SECONDS",
            help="On SIGTERM/SIGINT, how long the job in hand may take to finish before it is "
            "handed back to the queue (default: 30).",
        )
        parser.add_argument(
            "--max-jobs",
            type=positive_number("jobs", whole=True),
            metavar="N",
            help=f"Exit with status {EXIT_RECYCLE} after N jobs, for a fresh process to take over.",
        )
        parser.add_argument(
            "--max-memory",
            type=positive_number("megabytes"),
            metavar="MB",
            help=f"Exit with status {EXIT_RECYCLE} after a job that leaves the process above MB "
            "of resident memory.",
        )

    def execute(self, *args, **options) -> str | None:
        """Take SIGTERM and SIGINT over first, for the start-up; then what Django does."""
        with EarlyStop() as self.early_stop:
            return super().execute(*args, **options)

    def handle(self, *args, processes, burst, **options) -> None:
        use_console_unless_configured(options["verbosity"])
        models = served_models()
        if not domain_models():
            raise CommandError(
                "no job models are installed: subclass jobs.models.Job in an installed app"
            )
        worker_options = {
            "queues": options["queues"],
            "threads": options["threads"],
            "interval": options["interval"],
            "burst": burst,
            "grace": options["grace"],
            "max_jobs": options["max_jobs"],
            "max_memory_mb": options["max_memory"],
            "run_clock": options["clock"],
        }
        try:
            require_tables([*models, WorkerRow])
            fewest, most = processes or (1, 1)
            budget = ConnectionBudget(
                processes=most,
                threads=options["threads"],
                listening=not burst and engine_for(DEFAULT_DB_ALIAS).wakes_workers,
                supervised=processes is not None,
            )
            check_connection_budget(budget, DEFAULT_DB_ALIAS)
            if processes is not None:
                runner = Supervisor(
                    processes=fewest,
                    max_processes=most,
                    worker_options=worker_options,
                    scale_up_after=options["scale_up_after"],
                    scale_down_after=options["scale_down_after"],
                )
            else:
                runner = WorkerLoop(models=models, **worker_options)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        except CONNECTION_ERRORS as exc:
            raise database_unreachable(exc) from exc
        for queue in sorted(set(options["queues"] or ()) - queues_with_defaults()):
            self.stderr.write(
                f"warning: no job model defaults to queue {queue!r}; only rows enqueued "
                f"to it explicitly will run"
            )
        if settings.DEBUG:
            self.stderr.write(
                "warning: DEBUG is on, so Django records every query the worker makes; "
                "turn it off in production"
            )
        if self.early_stop.hand_to(runner):
            self.stderr.write("stopped while starting, as asked; no job was claimed")
            return
        runner.run()
        if runner.exit_code != EXIT_OK:
            sys.exit(runner.exit_code)
