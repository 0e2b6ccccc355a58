"""`jobs stack`: where a running job is now, the stack of the thread running it.

What its admin page shows: the stack its worker wrote last (every few seconds), with its
age; `--refresh` asks the workers for it now (PostgreSQL tells them at once) and waits for
the new one, at most until their next write.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from django.core.management.base import BaseCommand

from jobs import timesource
from jobs.cli.arguments import Subcommand, job_model, positive_number, usage_error
from jobs.db.wakeup import ask_for_stacks
from jobs.durations import format_duration
from jobs.joblog import shows_current_stack
from jobs.lease import stack_interval
from jobs.models import Job

# How often `--refresh` reads the row while it waits for the new stack.
REFRESH_POLL = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=job_model, metavar="APP_LABEL.MODEL")
    parser.add_argument("id", type=positive_number("ids", whole=True), metavar="ID")
    parser.add_argument(
        "--refresh", action="store_true", help="Ask for it now and wait for the new one."
    )


def handle(command: BaseCommand, *, model: type[Job], id: float, refresh: bool, **_: Any) -> None:
    job = _running(model, int(id))
    if refresh:
        job = _refreshed(job)
    if not shows_current_stack(job):
        command.stdout.write(
            f"{job.label} is running, but its worker has not written its stack yet: it does "
            "every few seconds (try --refresh)"
        )
        return
    age = format_duration(timesource.now() - job.stack_at)
    command.stdout.write(
        f"{job.label}, attempt {job.attempts} on {job.claimed_by}, "
        f"as of {job.stack_at:%Y-%m-%d %H:%M:%S} UTC ({age} ago), innermost call last:"
    )
    command.stdout.write(job.stack.rstrip("\n"))


def _running(model: type[Job], pk: int) -> Job:
    job = model._rows(model.objects.db).filter(pk=pk).first()
    if job is None:
        raise usage_error(f"no {model._meta.label} with id {pk}")
    if job.state != "running":
        raise usage_error(f"{job.label} is {job.state}, not running: it has no stack now")
    return job


def _refreshed(job: Job) -> Job:
    """`job` once its worker has written a stack newer than the one it has now, or as it is
    after a renewal's worth of waiting."""
    before = job.stack_at
    ask_for_stacks(job._state.db)
    deadline = time.monotonic() + stack_interval() + 1
    while time.monotonic() < deadline:
        time.sleep(REFRESH_POLL)
        job.refresh_from_db(fields=["state", "stack", "stack_at"])
        if job.stack_at is not None and job.stack_at != before:
            break
    return job


COMMAND = Subcommand(
    help="Show where a running job is now: the stack of its thread.",
    description="Print the stack of the thread running a job, as its worker last wrote it; "
    "--refresh asks for it now.",
    add_arguments=add_arguments,
    handle=handle,
)
