"""argparse types and errors shared by the `jobs` subcommands and `runjobs`.

A mistake on the command line is a usage error: one line on stderr, exit status 2 (what
argparse itself exits with), and nothing changed. Types check what they can at parse time,
so a bad value is refused before any row is read or written.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.durations import parse_duration
from jobs.models import Job
from jobs.models.discovery import job_models
from jobs.validation import parse_queue_list, validate_priority, validate_queue_name

USAGE = 2  # the exit status of a usage error, as argparse gives for its own


@dataclass(frozen=True)
class Subcommand:
    """One `jobs` subcommand: its help, its options, and what it does with them.

    `help` is the one line `manage.py jobs` lists it by (keep it under 70 characters, so
    the list fits a terminal); `description` is the paragraph `jobs SUBCOMMAND --help` shows.
    """

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[..., None]  # handle(command, **options)


def usage_error(message: str) -> CommandError:
    """A CommandError that exits like argparse's own errors: the input was refused."""
    return CommandError(message, returncode=USAGE)


def _checked(validate: Callable[[object], object]) -> Callable[[str], object]:
    """An argparse type from one of `jobs.validation`'s checks, keeping its message."""

    def parse(text: str) -> object:
        try:
            return validate(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


queue_list = _checked(parse_queue_list)
queue_name = _checked(validate_queue_name)


def priority(text: str) -> int:
    try:
        return validate_priority(int(text))
    except ValueError as exc:
        message = str(exc) if text.lstrip("+-").isdigit() else f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(f"priority: {message}") from None


def positive_number(unit: str, *, whole: bool = False) -> Callable[[str], float]:
    """An argparse type for a finite number greater than 0, named by its unit in errors."""
    kind = "whole number" if whole else "number"

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind} of {unit} greater than 0")
        return value

    return parse


def process_range(text: str) -> tuple[int, int]:
    """`--processes`: `P` (that many, always) or `MIN-MAX` (autoscaling between the two)."""
    fewest, dash, most = text.partition("-")
    whole = positive_number("processes", whole=True)
    if not dash:
        return (count := whole(text)), count
    try:
        bounds = whole(fewest), whole(most)
    except argparse.ArgumentTypeError:
        bounds = (0, 0)
    if not 0 < bounds[0] < bounds[1]:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not P or MIN-MAX processes, with 0 < MIN < MAX (such as 1-4)"
        )
    return bounds


# `30s`, `10m`, `1h30m`, `2d` or seconds, as the settings read them.
duration: Callable[[str], timedelta] = _checked(partial(parse_duration, what="the duration"))


def moment(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is read in the current time zone, as
    Django's forms read one."""
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-22T12:00:00+00:00"
        )
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def job_model(label: str) -> type[Job]:
    """A concrete job model by its `app_label.ModelName`; anything else is refused with the
    list of job models, so a typo is answered with the right spelling."""
    models = {model._meta.label_lower: model for model in job_models()}
    if (model := models.get(label.lower())) is not None:
        return model
    known = ", ".join(model._meta.label for model in models.values())
    raise argparse.ArgumentTypeError(f"{label!r} is not a job model; the job models are {known}")


def database_unreachable(exc: Exception) -> CommandError:
    """One line for a database that does not answer, instead of a traceback."""
    return CommandError(f"cannot reach the database: {' '.join(str(exc).split())}")


# The least room the last column of a table is cut to, however narrow the terminal: enough
# to tell one exception type from another.
NARROWEST_LAST_COLUMN = 24
ELLIPSIS = "…"


def line_width(command: BaseCommand) -> int | None:
    """How wide a line of `command`'s output may be: `COLUMNS`, else the terminal's width;
    None (no limit) when the output is not a terminal, so a pipe or a file gets it all."""
    if os.environ.get("COLUMNS") or command.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def write_table(
    command: BaseCommand,
    headers: tuple[str, ...],
    rows: list[tuple],
    *,
    width: int | None = None,
) -> None:
    """Columns padded to their widest cell; numbers right-aligned, so counts line up.

    With `width`, each cell of the last column is cut (ending in "…") so its line fits in
    `width` characters, though never to fewer than NARROWEST_LAST_COLUMN: the other
    columns identify the row and are never cut.
    """
    cells = [headers, *[tuple("" if cell is None else str(cell) for cell in row) for row in rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    if width is not None:
        room = max(width - sum(widths[:-1]) - 2 * (len(headers) - 1), NARROWEST_LAST_COLUMN)
        cells = [(*row[:-1], _cut(row[-1], room)) for row in cells]
        widths[-1] = max(len(row[-1]) for row in cells)
    numeric = [all(isinstance(row[column], int) for row in rows) for column in range(len(headers))]
    for row in cells:
        line = "  ".join(
            cell.rjust(size) if right else cell.ljust(size)
            for cell, size, right in zip(row, widths, numeric, strict=True)
        )
        command.stdout.write(line.rstrip())


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - len(ELLIPSIS)].rstrip() + ELLIPSIS
