"""`jobs list`: the rows that match some filters, newest first, as a table or JSON.

The table is for a terminal: one line per row, the error cut to fit the line. JSON (and the
admin) have every field in full.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import F
from django.utils import timezone

from jobs.cli.arguments import Subcommand, line_width, positive_number, write_table
from jobs.cli.selection import add_filters, select
from jobs.models import Job
from jobs.states import JobState

HEADERS = ("ID", "MODEL", "STATE", "QUEUE", "ATTEMPTS", "RUN AT", "ERROR")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_filters(parser)
    parser.add_argument(
        "--limit",
        type=positive_number("rows", whole=True),
        default=50,
        metavar="N",
        help="Show at most N rows, latest run_at first (default: 50).",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")


def handle(command: BaseCommand, *, limit: int, output: str, **options: Any) -> None:
    # Each table gives its latest `limit + 1` rows, so we know whether more match without
    # counting a table that may hold millions of finished rows.
    rows: list[Job] = []
    for selected in select(options).values():
        latest = F("run_at").desc(nulls_first=True)
        rows += selected.order_by(latest, "-pk")[: limit + 1]
    rows.sort(key=lambda job: (job.run_at is None, job.run_at or datetime.min), reverse=True)
    more = len(rows) > limit
    rows = rows[:limit]
    if output == "json":
        command.stdout.write(json.dumps([as_json(job) for job in rows], indent=2))
        return
    if not rows:
        command.stdout.write("no jobs match")
        return
    write_table(command, HEADERS, [row_cells(job) for job in rows], width=line_width(command))
    if more:
        command.stdout.write(f"(more rows match; showing the first {limit}, see --limit)")


def row_cells(job: Job) -> tuple:
    return (
        job.pk,
        job._meta.label,
        job.state,
        job.queue,
        f"{job.attempts}/{job.max_attempts}",
        local_time(job.run_at),
        error_summary(job, qualified=False) if job.state != JobState.SUCCEEDED else "",
    )


def error_summary(job: Job, *, qualified: bool = True) -> str:
    """The last failed attempt's exception type and message, on one line ("" if none).

    `qualified=False` names the type by its class alone (`ProviderError`, not
    `project.instances.provider.ProviderError`), where room is short. A job that succeeded
    after a failed attempt still has that attempt's error on its row.
    """
    if not job.error_type:
        return ""
    kind = job.error_type if qualified else job.error_type.rpartition(".")[2]
    text = f"{kind}: {job.error_message}" if job.error_message else kind
    return " ".join(text.split())


def local_time(moment: datetime | None) -> str:
    """To the second, in the current time zone: what an operator compares with a clock."""
    return "" if moment is None else f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"


def as_json(job: Job) -> dict[str, Any]:
    return {
        "job": job.label,
        "model": job._meta.label,
        "id": job.pk,
        "state": job.state,
        "queue": job.queue,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at.isoformat() if job.run_at else None,
        "error_type": job.error_type,
        "error_message": job.error_message,
    }


COMMAND = Subcommand(
    help="List jobs matching filters, latest first.",
    description="List jobs matching filters (model, state, queue, id, age), latest first.",
    add_arguments=add_arguments,
    handle=handle,
)
