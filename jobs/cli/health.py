"""`jobs health`: the health report as a Nagios plugin.

Its first line is the status, its exit code 0 (ok), 1 (warning), 2 (critical) or 3
(unknown: the check could not run), which is what monitoring agents read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from jobs.cli.arguments import Subcommand
from jobs.errors import ConfigurationError
from jobs.monitoring.health import CRITICAL, OK, UNKNOWN, WARNING, Report, check_health

EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help="Print the health view's JSON instead.",
    )


def handle(command: BaseCommand, *, as_json: bool, **options: Any) -> None:
    try:
        report = check_health()
    except ConfigurationError as exc:
        report = Report.unknown("configuration", str(exc))
    except DatabaseError as exc:
        reason = " ".join(str(exc).split())
        report = Report.unknown("database", f"cannot read the job tables: {reason}")
    if as_json:
        command.stdout.write(json.dumps(report.as_json(), indent=2))
    else:
        command.stdout.write(nagios_lines(report))
    if code := EXIT_CODES[report.status]:
        sys.exit(code)


def nagios_lines(report: Report) -> str:
    """The status and the first problem on one line (what an alert shows), then one line
    per problem (Nagios' long output)."""
    problems = report.problems
    if report.status == OK:
        summary = "no problems"
    else:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        summary = f"{problems[0].reason}{more}"
    lines = [f"JOBS {report.status.upper()} - {summary}"]
    if report.checked:
        lines += [f"{p.severity.upper()} {p.code}: {p.reason}" for p in problems]
    return "\n".join(lines)


COMMAND = Subcommand(
    help="Check queues, workers and the clock, as a Nagios plugin.",
    description="Report queues over their SLA, without a live worker, with a stale latency probe, "
    "a stopped clock or too many failures; exit 0 ok, 1 warning, 2 critical, 3 unknown.",
    add_arguments=add_arguments,
    handle=handle,
)
