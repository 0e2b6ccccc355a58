"""`manage.py jobs SUBCOMMAND`: operate on the job system from a shell or a monitoring agent.

One command with subcommands, so every operator's verb is found under one name. This module
only wires them up; each lives in its own module of `jobs.cli`.

Exit status: 0 done; 1 the operation could not be done (the database is unreachable, a job
run with `enqueue --run` did not succeed); 2 a usage error (a bad option, model, field,
value, state or queue, or no filter without `--all`): one line on stderr, nothing changed.
`jobs` with no subcommand exits 2 too, after listing them. `jobs health` has its own,
Nagios' (0 ok, 1 warning, 2 critical, 3 unknown).
"""

import argparse

from django.core.management.base import BaseCommand

from jobs.cli import cancel, enqueue, health, listing, move, pause, retry, stack, status
from jobs.cli.arguments import database_unreachable
from jobs.db.outage import CONNECTION_ERRORS

SUBCOMMANDS = {
    "health": health.COMMAND,
    "enqueue": enqueue.COMMAND,
    "list": listing.COMMAND,
    "retry": retry.COMMAND,
    "cancel": cancel.COMMAND,
    "move": move.COMMAND,
    "stack": stack.COMMAND,
    "status": status.COMMAND,
    "pause": pause.PAUSE,
    "resume": pause.RESUME,
}


def subcommand_list() -> str:
    """One line per subcommand, its name and its help, as `manage.py jobs` alone prints."""
    width = max(map(len, SUBCOMMANDS))
    return "\n".join(f"  {name:{width}}  {command.help}" for name, command in SUBCOMMANDS.items())


class Command(BaseCommand):
    help = "Operate on jobs: " + ", ".join(SUBCOMMANDS) + " (see `jobs SUBCOMMAND --help`)."
    # Bad settings are what `jobs health` reports as UNKNOWN (exit 3); Django's system checks
    # would stop it first with exit 1, which a monitoring agent would read as a warning.
    requires_system_checks = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Not `required=True`: argparse would answer a bare `jobs` with "the following
        # arguments are required: SUBCOMMAND" and not say which there are.
        subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        for name, subcommand in SUBCOMMANDS.items():
            subcommand.add_arguments(
                subparsers.add_parser(
                    name, help=subcommand.help, description=subcommand.description
                )
            )
        self._parser = parser

    def handle(self, *args, subcommand: str | None, **options) -> None:
        if subcommand is None:
            # argparse's usage error: the usage, this message, exit status 2 (from a shell;
            # call_command raises CommandError instead).
            self._parser.error(
                f"say which subcommand to run ({self._parser.prog} SUBCOMMAND --help "
                f"shows its options):\n{subcommand_list()}"
            )
        try:
            SUBCOMMANDS[subcommand].handle(self, **options)
        except CONNECTION_ERRORS as exc:
            raise database_unreachable(exc) from exc
