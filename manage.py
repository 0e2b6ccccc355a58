#!/usr/bin/env python
"""Django's command-line utility, which also turns configuration errors into one line."""

import os
import signal
import sys
from types import FrameType


def leave_if_stopped_while_loading() -> None:
    """Make SIGTERM and SIGINT end the process with exit 0 until runjobs takes them over.

    Django takes about half a second to load, and a deploy may stop a worker it has just
    started; nothing has been claimed by then, so the stop is a clean exit, not a kill.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _leave)


def _leave(signum: int, frame: FrameType | None) -> None:
    # os._exit, not sys.exit: a SystemExit raised where Python cannot pass it on (a weakref
    # callback of the import system, a __del__) is printed as "Exception ignored" and
    # dropped, and the worker then started with the stop forgotten.
    os._exit(0)


def main() -> None:
    if sys.argv[1:2] == ["runjobs"]:
        leave_if_stopped_while_loading()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A newcomer with a typo in DATABASE_URL needs the sentence, not a 40-line traceback.
        sys.exit(f"configuration error: {exc}")


if __name__ == "__main__":
    main()
