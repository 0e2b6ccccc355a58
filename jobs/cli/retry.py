"""`jobs retry`: failed and cancelled jobs back to the queue, scheduled ones due now.

The same verbs as the admin's "Requeue" and "Retry now" (`JobQuerySet.requeue()` and
`retry_now()`), so a retry from the shell obeys the same transitions.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from jobs.cli import changes
from jobs.cli.arguments import Subcommand
from jobs.models import JobQuerySet
from jobs.states import REQUEUEABLE_STATES, JobState

RETRYABLE = REQUEUEABLE_STATES | {JobState.PENDING}


def handle(command: BaseCommand, **options: Any) -> None:
    changes.apply(command, "retry", RETRYABLE, options, change=retry, count=count)


def retry(rows: JobQuerySet) -> dict[str, int]:
    # Scheduled rows first: a row requeued now is due now, and no longer counts as scheduled.
    # A row whose unique key has an active job stays as it is (`requeue(skip_duplicates=)`).
    return {"moved to now": rows.retry_now(), "requeued": rows.requeue(skip_duplicates=True)}


def count(rows: JobQuerySet) -> dict[str, int]:
    return {
        "moved to now": rows.scheduled().count(),
        "requeued": rows.requeueable().count(),
    }


COMMAND = Subcommand(
    help="Requeue failed or cancelled jobs; make scheduled ones due now.",
    description="Requeue failed or cancelled jobs with fresh attempts, and run scheduled "
    "pending ones now; by filters.",
    add_arguments=changes.add_arguments,
    handle=handle,
)
