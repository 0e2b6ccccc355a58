"""The one source of "now" for everything that schedules, backs off or expires.

Callers write `timesource.now()` (not `from jobs.timesource import now`) so a test can move time by
patching this module's `now` instead of sleeping.
"""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
