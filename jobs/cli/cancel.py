"""`jobs cancel`: stop jobs by filters, as the admin's "Cancel" does (`JobQuerySet.cancel()`).

New and pending jobs end cancelled at once; a running one is asked to stop, and stops if
its `perform()` checks `cancellation_requested()`. Finished jobs are left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.cli import changes
from jobs.cli.arguments import Subcommand
from jobs.models import JobQuerySet
from jobs.states import CANCELLABLE_STATES, JobState

STOPPABLE = CANCELLABLE_STATES | {JobState.RUNNING}


def handle(command: BaseCommand, **options: Any) -> None:
    changes.apply(command, "cancel", STOPPABLE, options, change=cancel, count=count)


def cancel(rows: JobQuerySet) -> dict[str, int]:
    return {"cancelled or asked to stop": rows.cancel()}


def count(rows: JobQuerySet) -> dict[str, int]:
    return {
        "cancelled": rows.cancellable().count(),
        "asked to stop": rows.stoppable().count(),
    }


COMMAND = Subcommand(
    help="Cancel new and pending jobs; ask running ones to stop.",
    description="Cancel new and pending jobs, and ask running ones to stop; by filters.",
    add_arguments=changes.add_arguments,
    handle=handle,
)
