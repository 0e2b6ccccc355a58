"""`manage.py jobs SUBCOMMAND`: operate on the job system from a shell or a monitoring agent.

One command with subcommands, so every operator's verb is found under one name.
`jobs health` is a Nagios plugin: its first line is the status, its exit code 0 (ok),
1 (warning), 2 (critical) or 3 (unknown: the check could not run).
"""

import argparse
import json
import sys

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from jobs.errors import ConfigurationError
from jobs.health import CRITICAL, OK, UNKNOWN, WARNING, Report, check_health

EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}


class Command(BaseCommand):
    help = "Operate on jobs. `jobs health`: check the queues, as a Nagios plugin would."
    # Bad settings are what `jobs health` reports as UNKNOWN (exit 3); Django's system checks
    # would stop it first with exit 1, which a monitoring agent would read as a warning.
    requires_system_checks = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        subcommands = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
        health = subcommands.add_parser(
            "health",
            help="Report queues over their SLA, without a live worker, with a stale heartbeat, "
            "a stopped clock or too many failures; exit 0 ok, 1 warning, 2 critical, 3 unknown.",
        )
        health.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help="Print the health view's JSON instead.",
        )

    def handle(self, *args, subcommand: str, **options) -> None:
        subcommands = {"health": self.health}
        subcommands[subcommand](**options)

    def health(self, *, as_json: bool, **options) -> None:
        try:
            report = check_health()
        except ConfigurationError as exc:
            report = Report.unknown("configuration", str(exc))
        except DatabaseError as exc:
            reason = " ".join(str(exc).split())
            report = Report.unknown("database", f"cannot read the job tables: {reason}")
        if as_json:
            self.stdout.write(json.dumps(report.as_json(), indent=2))
        else:
            self.stdout.write(nagios_lines(report))
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
