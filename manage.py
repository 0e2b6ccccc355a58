#!/usr/bin/env python
"""Django's command-line utility, which also turns configuration errors into one line."""

import os
import signal
import sys


def main() -> None:
    if sys.argv[1:2] == ["runjobs"]:
        # Stopped while Django loads, before runjobs can take the signals over (its first half
        # second): nothing has been claimed yet, so leave cleanly (exit 0), not killed by it.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: sys.exit(0))
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
