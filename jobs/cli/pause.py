"""`jobs pause` and `jobs resume`: stop and restart claiming from a queue (or one job model
in it) on every worker, as the admin's queue pauses do (`jobs.models.QueuePause`).

A pause is a row: it holds across worker restarts and deploys until resumed. Workers stop
claiming within a second; jobs already running finish. Like `retry` and `cancel` finding
nothing to change, resuming a queue that is not paused says so and exits 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from jobs.cli.arguments import Subcommand, job_model, queue_name
from jobs.models import Job, QueuePause

REASON_MAX = QueuePause._meta.get_field("reason").max_length


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queue", type=queue_name, metavar="QUEUE", help="The queue's name.")
    parser.add_argument(
        "--model",
        type=job_model,
        metavar="APP.MODEL",
        help="Only this job model's rows in the queue (default: every job model).",
    )


def reason(text: str) -> str:
    if len(text) > REASON_MAX:
        raise argparse.ArgumentTypeError(
            f"the reason is {len(text)} characters long; keep it to {REASON_MAX}"
        )
    return text


def add_pause_arguments(parser: argparse.ArgumentParser) -> None:
    add_target(parser)
    parser.add_argument(
        "--reason", type=reason, default="", help="Why, shown in the admin, status and health."
    )
    parser.add_argument(
        "--by", default="", metavar="NAME", help="Who pauses it (default: left blank)."
    )


def label(model: type[Job] | None) -> str:
    """What a pause row records for `model`: its concrete model's label (a proxy's rows
    are its concrete model's), or "" for every model."""
    return "" if model is None else model._meta.concrete_model._meta.label


def described(queue: str, model: str) -> str:
    return f"queue {queue}" + (f" (model {model})" if model else "")


def handle_pause(
    command: BaseCommand,
    *,
    queue: str,
    model: type[Job] | None,
    reason: str,
    by: str,
    **options: Any,
) -> None:
    pause, created = QueuePause.objects.pause(
        queue, model=label(model), reason=reason, paused_by=by
    )
    what = described(queue, pause.model)
    if created:
        command.stdout.write(f"paused {what}: workers stop claiming from it within a second")
    else:
        command.stdout.write(f"{what} was already paused: reason updated")


def handle_resume(
    command: BaseCommand, *, queue: str, model: type[Job] | None, **options: Any
) -> None:
    what = described(queue, label(model))
    if QueuePause.objects.resume(queue, model=label(model)):
        command.stdout.write(f"resumed {what}")
        return
    others = QueuePause.objects.filter(queue=queue).exclude(model=label(model))
    hint = ""
    if others:
        hint = "; paused in it: " + ", ".join(p.model or "every model" for p in others)
    command.stdout.write(f"{what} is not paused: nothing changed{hint}")


PAUSE = Subcommand(
    help="Pause a queue (or one job model in it) on every worker.",
    description="Stop every worker claiming from QUEUE (only APP.MODEL's rows with --model) "
    "within a second, until `jobs resume`; running jobs finish. Pausing again updates the "
    "reason.",
    add_arguments=add_pause_arguments,
    handle=handle_pause,
)

RESUME = Subcommand(
    help="Resume a paused queue (or job model in it).",
    description="End the pause of QUEUE (of APP.MODEL in it with --model): workers claim "
    "its waiting jobs at once. A queue that is not paused is left alone (exit 0).",
    add_arguments=add_target,
    handle=handle_resume,
)
