"""Where a worker prints when the project configured no logging of its own.

A project made by `startproject` has no `LOGGING` setting and no handler on the root logger.
Python then prints warnings and errors only, and drops every INFO line: a worker's "started"
and "succeeded", and what `perform()` logs, which is then not kept on the job's row either
(jobs.joblog keeps what logging lets through). A worker that says nothing is a worker nobody
trusts, so `runjobs` sets up a console in that case only, as Celery's and RQ's workers do:
one stream handler on the root logger, writing to stderr, with the root logger at the level
`--verbosity` asks for (INFO by default).

A project that configures logging (a `LOGGING` setting, or any handler on the root logger)
keeps it exactly as it is: nothing is added, and the worker's lines go where that
configuration sends the `jobs` loggers.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings

from jobs.joblog import LINE_FORMAT, capture_handler

# manage.py's --verbosity (0 to 3) as a level for the console.
LEVELS = {0: logging.WARNING, 1: logging.INFO}


def logging_configured() -> bool:
    """Whether the project said where log records go: a `LOGGING` setting, or a handler on
    the root logger other than the framework's own capture."""
    root = logging.getLogger()
    own = capture_handler()
    return bool(getattr(settings, "LOGGING", None)) or any(h is not own for h in root.handlers)


def use_console_unless_configured(verbosity: int = 1) -> bool:
    """Print the process's log records on stderr if the project configured no logging.

    Returns whether it did. The console's level follows `verbosity` (0 warnings and errors,
    1 INFO, 2 or more DEBUG).
    """
    if logging_configured():
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(LEVELS.get(verbosity, logging.DEBUG))
    return True
