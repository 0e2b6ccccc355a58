"""What `jobs retry`, `jobs cancel` and `jobs move` share: the filters, the refusal to touch
every job by accident, `--dry-run`, and the per-model report of what changed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from jobs.cli.arguments import usage_error
from jobs.cli.selection import add_filters, has_filter, select
from jobs.models import JobQuerySet
from jobs.states import JobState

# A verb's counts for one model's selected rows: {"requeued": 3, "moved to now": 1}.
Counter = Callable[[JobQuerySet], dict[str, int]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_filters(parser)
    parser.add_argument(
        "--all",
        dest="everything",
        action="store_true",
        help="Allow a run with no filter, over every job of every model.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Say how many rows would change, and change none.",
    )


def apply(
    command: BaseCommand,
    verb: str,
    states: frozenset[str],
    options: dict[str, Any],
    *,
    change: Counter,
    count: Counter,
) -> None:
    """`change` (or, with --dry-run, `count`) the selected rows of each model, one
    transaction per model, and say how many of each model changed.

    No filter at all is refused unless --all is given: a mistyped option must not reach
    every job. A --state the verb cannot apply to is refused, not answered with "0".
    """
    if not has_filter(options) and not options["everything"]:
        raise usage_error(
            f"say which jobs to {verb} (--model, --state, --queue, --id, --older-than, "
            f"--failed-since), or give --all to {verb} every job"
        )
    state = options["state"] or (JobState.FAILED if options["failed_since"] else None)
    if state is not None and state not in states:
        raise usage_error(f"{verb} applies to {', '.join(sorted(states))} jobs, not {state} ones")
    dry_run = options["dry_run"]
    changed = 0
    for model, rows in select(options).items():
        with transaction.atomic(using=rows.db):
            counts = count(rows) if dry_run else change(rows)
        if any(counts.values()):
            would = "would be " if dry_run else ""
            done = ", ".join(f"{n} {would}{what}" for what, n in counts.items() if n)
            command.stdout.write(f"{model._meta.label}: {done}")
            changed += sum(counts.values())
    if dry_run:
        command.stdout.write(f"dry run: {changed} job(s) would change; nothing was changed")
    elif not changed:
        command.stdout.write(f"no job matched that {verb} applies to: nothing changed")
