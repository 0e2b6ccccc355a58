"""The filters `jobs list`, `jobs retry` and `jobs cancel` share, and the rows they select.

A filter that can only be a mistake (an unknown model, state or queue, an id without the
model whose table it is in) is a usage error, never an empty selection: an operator who
mistypes a queue name should hear so, not read "0 changed" and think the work is done.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobs import timesource
from jobs.cli.arguments import duration, job_model, positive_number, queue_name, usage_error
from jobs.models import Job, JobQuerySet
from jobs.models.discovery import job_models, queues_with_defaults
from jobs.states import JobState

FILTERS = ("models", "state", "queue", "ids", "older_than", "failed_since")


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=job_model,
        metavar="APP_LABEL.MODEL",
        help="Only this job model (repeatable; default: every job model).",
    )
    parser.add_argument("--state", choices=JobState.values, help="Only rows in this state.")
    parser.add_argument("--queue", type=queue_name, help="Only rows on this queue.")
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=positive_number("ids", whole=True),
        metavar="ID",
        help="Only this row (repeatable); needs exactly one --model, as ids are per table.",
    )
    parser.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="Only rows enqueued longer ago than this (30s, 10m, 1h30m, 2d).",
    )
    parser.add_argument(
        "--failed-since",
        type=duration,
        metavar="DURATION",
        help="Only rows that failed for good within this long (implies --state failed).",
    )


def has_filter(options: dict[str, Any]) -> bool:
    return any(options.get(name) for name in FILTERS)


def select(options: dict[str, Any]) -> dict[type[Job], JobQuerySet]:
    """The rows the filters in `options` name, as one queryset per job model."""
    models = list(dict.fromkeys(options.get("models") or job_models()))
    if options.get("ids") and len(models) != 1:
        raise usage_error("--id needs exactly one --model: each job model numbers its own rows")
    state = options.get("state")
    lookups: dict[str, Any] = {}
    if state:
        lookups["state"] = state
    if since := options.get("failed_since"):
        if state not in (None, JobState.FAILED):
            raise usage_error(
                f"--failed-since selects failed rows; it cannot go with --state {state}"
            )
        lookups.update(state=JobState.FAILED, finished_at__gte=timesource.now() - since)
    if older_than := options.get("older_than"):
        lookups["requested_at__lt"] = timesource.now() - older_than
    if ids := options.get("ids"):
        lookups["pk__in"] = ids
    rows = {model: model._default_manager.filter(**lookups) for model in models}
    if queue := options.get("queue"):
        _require_known_queue(queue, rows)
        rows = {model: selected.filter(queue=queue) for model, selected in rows.items()}
    return rows


def _require_known_queue(queue: str, rows: dict[type[Job], JobQuerySet]) -> None:
    """A queue no job model defaults to and no row of these models uses is a typo."""
    if queue in queues_with_defaults():
        return
    if any(model._default_manager.filter(queue=queue).exists() for model in rows):
        return
    known = ", ".join(sorted(queues_with_defaults()))
    raise usage_error(
        f"no job uses queue {queue!r}: no job model defaults to it and no row is on it; "
        f"the default queues are {known}"
    )
