"""The framework's settings, read here and nowhere else, with their defaults.

Every `JOBS_*` setting (and Django's `TASKS`) is read through this package; the structured
ones are parsed where their concept lives (`JOBS_QUEUES` in `jobs.conf.queues`, `JOBS_SCHEDULE`
in `jobs.cron.schedules`), and `manage.py check` validates them all.

`JOBS_RETENTION` (default `{"succeeded": 7, "failed": 30, "cancelled": 7}`): days to keep
finished rows of each state before workers prune them; `None` keeps them forever. A job
model's `retention` class attribute overrides it per state. Failed rows are kept longest
because someone may still want to read why they failed.

`JOBS_LEASE_SECONDS` (default 60): how long a running job's claim stays valid without a
heartbeat. Workers renew the leases of the jobs they run every quarter of it; a job whose
lease has run out is taken to be orphaned (its worker died) and is rescued. Shorter means
faster rescue after a crash, and more renewal writes.

`JOBS_LISTEN` (default True): on PostgreSQL, enqueueing sends a NOTIFY on commit and idle
workers LISTEN, so they start new jobs within milliseconds. Behind a connection pooler in
transaction mode (PgBouncer), where LISTEN does not work, name a `DATABASES` alias that
reaches the same database directly (`JOBS_LISTEN = "direct"`): workers LISTEN there, one
connection each, while everything else goes through the pooler; or set it to False, and
workers poll every `--interval`.

`JOBS_TRANSACTION_POOLING` (default False): the default database is reached through a pooler
in transaction mode, which hands each transaction to any server session. Workers then keep
nothing in a session: the planner settings of a claim are `SET LOCAL` in its transaction
instead of `SET` once per connection. See docs/databases.md.

`JOBS_NETWORK_TIMEOUT` (default 10): seconds a worker's database connection may stay
silent (a cut network, a frozen server) before it counts as broken and the worker reports
an outage; `None` leaves it to the operating system (hours). See `jobs.db.network`.

`JOBS_METRICS_TOKEN` (default None): with a token, the Prometheus endpoint (`jobs-metrics`)
answers only requests carrying `Authorization: Bearer <token>`; without one it is open, as it
shows counts and timings, never a job's data.

`JOBS_RUN_INLINE` (default False): for tests (and perhaps local development), every job
runs in the process that enqueued it, as soon as its transaction commits, instead of
waiting for a worker; see `jobs.testing.run_jobs_inline()` and docs/testing.md. Never in
production: a web request would wait for its jobs.
"""

from datetime import timedelta

from django.conf import settings

from jobs.errors import ConfigurationError

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


def listen_using(using: str) -> str:
    """The database alias a worker of `using` LISTENs on: `JOBS_LISTEN` where it names one
    (a direct connection past a transaction pooler), else `using` itself."""
    setting = getattr(settings, "JOBS_LISTEN", True)
    return setting if isinstance(setting, str) else using


def transaction_pooling() -> bool:
    return bool(getattr(settings, "JOBS_TRANSACTION_POOLING", False))


def run_inline() -> bool:
    return bool(getattr(settings, "JOBS_RUN_INLINE", False))


def metrics_token() -> str | None:
    """The token scrapes must present, or None; ConfigurationError if it is unusable."""
    token = getattr(settings, "JOBS_METRICS_TOKEN", None)
    usable = isinstance(token, str) and token.isascii() and token.isprintable()
    if token is not None and not (usable and token and " " not in token):
        raise ConfigurationError(
            "JOBS_METRICS_TOKEN must be a string of printable ASCII without spaces (e.g. from "
            "secrets.token_urlsafe()), or None to leave the metrics endpoint open; got a "
            f"{type(token).__name__} that is not (its value is a secret, so it is not shown)"
        )
    return token


def tasks_setting() -> dict:
    """Django's `TASKS` setting (the Tasks API's backends), or {} if there is none."""
    return getattr(settings, "TASKS", None) or {}


def schedule_setting() -> object:
    """`JOBS_SCHEDULE` as given ({} if unset); `jobs.cron.schedules` parses it."""
    return getattr(settings, "JOBS_SCHEDULE", {})


DEFAULT_NETWORK_TIMEOUT = 10.0
MAX_NETWORK_TIMEOUT = 3600  # libpq's tcp_user_timeout is milliseconds in a C int


def network_timeout() -> object:
    """The setting as given; `manage.py check` (jobs.E012) says if it is not usable."""
    return getattr(settings, "JOBS_NETWORK_TIMEOUT", DEFAULT_NETWORK_TIMEOUT)


def middleware_setting() -> object:
    """`JOBS_MIDDLEWARE` as given (empty when unset); `jobs.execution.middleware` reads it as
    a list of dotted paths, and `manage.py check` (jobs.E015) says if it is not one."""
    return getattr(settings, "JOBS_MIDDLEWARE", ())


def read_replica_setting() -> str | None:
    """`JOBS_READ_REPLICA`: the database alias `jobs.contrib.replica` sends jobs' reads to;
    `manage.py check` (jobs.E016) says if it names no database."""
    return getattr(settings, "JOBS_READ_REPLICA", None)
