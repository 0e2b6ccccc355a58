"""`jobs enqueue`: create a job from the shell with typed input, and queue it (or run it).

Input is typed and checked by the model's own fields, as a form would: each value goes
through its field's `to_python()` (a foreign key through its target's), then the whole row
through `full_clean()`. So the shell accepts exactly what the model does, and a bad field
name, value, missing field or missing related row is refused before anything is written,
with one line that starts `invalid app_label.Model:` and names the field.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from jobs.cli.arguments import (
    Subcommand,
    job_model,
    moment,
    positive_number,
    priority,
    queue_name,
    usage_error,
)
from jobs.cli.listing import as_json, error_summary, local_time
from jobs.errors import DuplicateJob
from jobs.models import Job
from jobs.models.job import LIFECYCLE_FIELDS
from jobs.states import JobState
from jobs.validation import OPTION_VALIDATORS

FAILED_RUN = 1  # exit status of `--run` when the job did not succeed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=job_model, metavar="APP_LABEL.MODEL")
    parser.add_argument(
        "--field",
        dest="fields",
        action="append",
        type=assignment,
        default=[],
        metavar="NAME=VALUE",
        help="Set a field, typed by the model (repeatable); a foreign key takes the related "
        "row's primary key.",
    )
    parser.add_argument(
        "--json",
        dest="json_fields",
        type=json_object,
        default={},
        metavar="OBJECT",
        help='Set fields from a JSON object, e.g. \'{"instance": 5}\'; "-" reads it from stdin.',
    )
    parser.add_argument("--queue", type=queue_name, help="Override the model's default queue.")
    parser.add_argument(
        "--priority", type=priority, help="Override the model's default (-100 to 100)."
    )
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--delay", type=positive_number("seconds"), metavar="SECONDS", help="Run after SECONDS."
    )
    when.add_argument(
        "--run-at", type=moment, metavar="ISO8601", help="Run at this time (default: now)."
    )
    when.add_argument(
        "--run",
        action="store_true",
        help=f"Perform it now in this process instead of queueing it; exit {FAILED_RUN} "
        "unless it succeeds.",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")


def assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def json_object(text: str) -> dict[str, Any]:
    source = sys.stdin.read() if text == "-" else text
    try:
        value = json.loads(source)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"--json must be an object of field names to values, got {type(value).__name__}"
        )
    return value


def handle(
    command: BaseCommand,
    *,
    model: type[Job],
    fields: list[tuple[str, str]],
    json_fields: dict[str, Any],
    queue: str | None,
    priority: int | None,
    delay: float | None,
    run_at: datetime | None,
    run: bool,
    output: str,
    **options: Any,
) -> None:
    if twice := sorted({name for name, _ in fields} & set(json_fields)):
        raise invalid(model, f"{', '.join(twice)} given both by --field and by --json")
    given = [(name, value, True) for name, value in fields]
    given += [(name, value, False) for name, value in json_fields.items()]
    job = build(model, given, queue=queue, priority=priority)
    if run:
        job.save()
        job.run()
    else:
        try:
            with transaction.atomic(using=job._state.db):
                job.enqueue(run_at=run_at, delay=delay)
        except DuplicateJob as duplicate:
            raise invalid(model, str(duplicate)) from None
    if output == "json":
        command.stdout.write(json.dumps(as_json(job), indent=2))
    else:
        command.stdout.write(outcome(job, ran=run))
    if run and job.state != JobState.SUCCEEDED:
        sys.exit(FAILED_RUN)


def build(
    model: type[Job],
    given: list[tuple[str, Any, bool]],
    *,
    queue: str | None = None,
    priority: int | None = None,
) -> Job:
    """An unsaved, validated `model` from (name, value, given as text) triples.

    Raises a usage error (`invalid()`) naming the field and what is wrong with it.
    """
    settable = settable_fields(model)
    job = model()
    for name, value, as_text in given:
        if (field := settable.get(name)) is None:
            raise invalid(model, f"no field {name!r} to set; its fields are {', '.join(settable)}")
        try:
            setattr(job, field.attname, typed(field, value, as_text=as_text))
        except ValidationError as exc:
            raise invalid(model, f"{name}: {' '.join(exc.messages)}") from None
    if queue is not None:
        job.queue = queue
    if priority is not None:
        job.priority = priority
    try:
        job.full_clean(exclude=LIFECYCLE_FIELDS)
    except ValidationError as exc:
        raise invalid(model, one_line(model, exc)) from None
    # The row options' ranges are not the fields' own (a priority is a small integer, but
    # only -100 to 100 is one): check them as `manage.py check` checks a model's defaults.
    for option, validate in OPTION_VALIDATORS.items():
        try:
            validate(getattr(job, option))
        except ValueError as exc:
            raise invalid(model, str(exc)) from None
    return job


def invalid(model: type[Job], reason: str) -> CommandError:
    """The usage error for input `model` refuses; every one starts the same way, so a
    script or an operator can tell a refused job from a failed command."""
    return usage_error(f"invalid {model._meta.label}: {reason}")


def settable_fields(model: type[Job]) -> dict[str, models.Field]:
    """Domain fields and row options; the lifecycle belongs to the verbs."""
    return {
        field.name: field
        for field in model._meta.concrete_fields
        if field.editable and not field.primary_key and field.name not in LIFECYCLE_FIELDS
    }


def typed(field: models.Field, value: Any, *, as_text: bool) -> Any:
    """`value` as `field` stores it: a foreign key as its target's key, JSON text parsed."""
    if field.is_relation:
        return field.target_field.to_python(value)
    if isinstance(field, models.JSONField) and as_text:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValidationError(f"{value!r} is not JSON ({exc})") from None
    return field.to_python(value)


def one_line(model: type[Job], error: ValidationError) -> str:
    """`full_clean()`'s errors on one line, each after the name of its field."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    parts = []
    for name, errors in error.error_dict.items():
        messages = " ".join(field_messages(model, name, errors))
        parts.append(messages if name == NON_FIELD_ERRORS else f"{name}: {messages}")
    return "; ".join(parts)


def field_messages(model: type[Job], name: str, errors: list[ValidationError]) -> list[str]:
    """The messages of one field's errors, with a foreign key to no row said plainly.

    Django says "instance instance with id 5 is not a valid choice." (the field's name,
    then the target's verbose name); this says "no Instance with id 5".
    """
    field = None if name == NON_FIELD_ERRORS else model._meta.get_field(name)
    messages = []
    for error in errors:
        if isinstance(field, models.ForeignKey) and error.code == "invalid":
            messages.append(no_such_row(field, error.params["value"]))
        else:
            messages.extend(error.messages)
    return messages


def no_such_row(field: models.ForeignKey, value: Any) -> str:
    """What a foreign key's `validate()` found: no row of its target with `value`, or none
    its `limit_choices_to` lets it point at."""
    key = repr(value) if isinstance(value, str) else value
    target = f"no {field.related_model._meta.object_name} with {field.target_field.name} {key}"
    if field.get_limit_choices_to():
        return f"{target} that its limit_choices_to allows"
    return target


def outcome(job: Job, *, ran: bool) -> str:
    """One line: where the job was queued, or how the run ended (its error on one line)."""
    if not ran:
        return f"enqueued {job.label} on queue {job.queue}, to run at {local_time(job.run_at)}"
    if job.state == JobState.SUCCEEDED:
        return f"{job.label} succeeded"
    error = error_summary(job)
    if job.state == JobState.PENDING:
        return f"{job.label} failed ({error}); will retry at {local_time(job.run_at)}"
    return f"{job.label} {job.state}: {error}" if error else f"{job.label} {job.state}"


COMMAND = Subcommand(
    help="Create a job from typed fields and enqueue it, or --run it here.",
    description="Create a job from typed fields (--field NAME=VALUE, --json) and enqueue it, "
    "or perform it now (--run).",
    add_arguments=add_arguments,
    handle=handle,
)
