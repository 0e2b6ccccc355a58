"""`jobs move`: pending jobs to another queue and/or priority, as the admin's "Move" does
(`JobQuerySet.move()`): "drain this queue on the big workers".

Pending and waiting jobs move, keeping their place otherwise (when they are due, their
attempts); running, new and finished ones are left alone. The filters (`--queue` names the
queue they are on now) and `--dry-run` are those of `jobs retry` and `jobs cancel`.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from jobs.cli import changes
from jobs.cli.arguments import Subcommand, priority, queue_name, usage_error
from jobs.models import JobQuerySet
from jobs.states import MOVABLE_STATES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    changes.add_arguments(parser)
    parser.add_argument(
        "--to-queue", type=queue_name, metavar="QUEUE", help="The queue to move them to."
    )
    parser.add_argument(
        "--to-priority",
        type=priority,
        metavar="N",
        help="The priority to give them (-100 to 100, higher runs first).",
    )


def handle(command: BaseCommand, **options: Any) -> None:
    queue, to_priority = options["to_queue"], options["to_priority"]
    if queue is None and to_priority is None:
        raise usage_error("say where to: --to-queue, --to-priority, or both")

    def move(rows: JobQuerySet) -> dict[str, int]:
        return {"moved": rows.move(queue=queue, priority=to_priority)}

    changes.apply(command, "move", MOVABLE_STATES, options, change=move, count=count)


def count(rows: JobQuerySet) -> dict[str, int]:
    return {"moved": rows.movable().count()}


COMMAND = Subcommand(
    help="Move pending jobs to another queue and/or priority.",
    description="Move pending and waiting jobs to another queue and/or priority, keeping "
    "their place otherwise; by filters.",
    add_arguments=add_arguments,
    handle=handle,
)
