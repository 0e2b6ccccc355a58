"""The framework's settings, read in one place, with their defaults.

`JOBS_RETENTION` (default `{"succeeded": 7, "failed": 30, "cancelled": 7}`): days to keep
finished rows of each state before workers prune them; `None` keeps them forever. A job
model's `retention` class attribute overrides it per state. Failed rows are kept longest
because someone may still want to read why they failed.

`JOBS_LEASE_SECONDS` (default 60): how long a running job's claim stays valid without a
heartbeat. Workers renew the leases of the jobs they run every quarter of it; a job whose
lease has run out is taken to be orphaned (its worker died) and is rescued. Shorter means
faster rescue after a crash, and more renewal writes.

`JOBS_LISTEN` (default True): on PostgreSQL, enqueueing sends a NOTIFY on commit and idle
workers LISTEN, so they start new jobs within milliseconds. Set it to False behind a
connection pooler in transaction mode (PgBouncer), where LISTEN does not work; workers then
poll every `--interval`.
"""

from datetime import timedelta

from django.conf import settings

DEFAULT_LEASE_SECONDS = 60.0


def lease_seconds() -> object:
    """The setting as given; `manage.py check` (jobs.E004) says if it is not usable."""
    return getattr(settings, "JOBS_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)


def lease_duration() -> timedelta:
    return timedelta(seconds=lease_seconds())


def heartbeat_interval() -> float:
    """Seconds between lease renewals: four chances to renew before a lease runs out."""
    return lease_duration().total_seconds() / 4


DEFAULT_RETENTION_DAYS = {"succeeded": 7, "failed": 30, "cancelled": 7}


def retention_days() -> object:
    """The setting as given, over the defaults; `manage.py check` (jobs.E006) validates it."""
    configured = getattr(settings, "JOBS_RETENTION", {})
    if not isinstance(configured, dict):
        return configured
    return {**DEFAULT_RETENTION_DAYS, **configured}


def listen_enabled() -> bool:
    return bool(getattr(settings, "JOBS_LISTEN", True))
