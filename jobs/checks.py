"""System checks (`manage.py check`, and before `runjobs`): job models and databases."""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections, router

from jobs.conf import (
    MAX_NETWORK_TIMEOUT,
    lease_seconds,
    metrics_token,
    network_timeout,
    read_replica_setting,
    retention_days,
    tasks_setting,
)
from jobs.conf.queues import configured_queues
from jobs.contrib.replica import ReplicaRouter
from jobs.cron.schedules import parse_schedule, raw_schedules
from jobs.db import ENGINES
from jobs.db.limits import concurrency_limit, limits_of, rate_limit
from jobs.errors import ConfigurationError
from jobs.execution import middleware
from jobs.models import Job
from jobs.models.discovery import job_models
from jobs.models.iterative import IterativeJob, iteration_problems
from jobs.validation import OPTION_VALIDATORS, validate_retention

REPLICA_MIDDLEWARE = "jobs.contrib.replica.ReplicaReads"
REPLICA_ROUTER = "jobs.contrib.replica.ReplicaRouter"  # named in messages


@register(Tags.models)
def check_job_models(app_configs=None, **kwargs) -> list:
    """Catch a job model that could never run, before a worker finds out at 3 a.m."""
    return [
        error
        for model in job_models()
        if app_configs is None or model._meta.app_config in app_configs
        for error in job_model_errors(model)
    ]


def job_model_errors(model: type[Job]) -> list[Error]:
    errors = []
    if model.perform is Job.perform:
        errors.append(
            Error(
                f"{model._meta.label} does not define perform().",
                hint="Add a perform(self) method with the job's work.",
                obj=model,
                id="jobs.E001",
            )
        )
    for rule in ("retry_on", "discard_on"):
        classes = getattr(model, rule)
        if not isinstance(classes, tuple) or not all(
            isinstance(cls, type) and issubclass(cls, BaseException) for cls in classes
        ):
            errors.append(
                Error(
                    f"{model._meta.label}.{rule} must be a tuple of exception classes, "
                    f"got {classes!r}.",
                    obj=model,
                    id="jobs.E005",
                )
            )
    try:
        validate_retention(model.retention)
    except ValueError as exc:
        errors.append(Error(f"{model._meta.label}: {exc}", obj=model, id="jobs.E006"))
    for option, validate in OPTION_VALIDATORS.items():
        try:
            validate(model._meta.get_field(option).default)
        except ValueError as exc:
            errors.append(Error(f"{model._meta.label}.{option}: {exc}", obj=model, id="jobs.E002"))
    if (problem := unique_on_problem(model)) is not None:
        errors.append(Error(f"{model._meta.label}.unique_on {problem}", obj=model, id="jobs.E013"))
    errors += [
        Error(f"{model._meta.label}.{problem}", obj=model, id="jobs.E014")
        for problem in limits_problems(model)
    ]
    if issubclass(model, IterativeJob):
        errors += [
            Error(f"{model._meta.label}.{problem}", obj=model, id="jobs.E017")
            for problem in iteration_problems(model)
        ]
    return errors


def limits_problems(model: type[Job]) -> list[str]:
    """What is wrong with `model`'s concurrency_key, concurrency_limit and rate_limit, each
    starting with the option's name. Without a check, a malformed one would leave the model
    unlimited (`limits_of` ignores it) and the limit would silently not hold."""
    key, limit, rate = model.concurrency_key, model.concurrency_limit, model.rate_limit
    problems = []
    if limit is not None and concurrency_limit(model) is None:
        problems.append(
            f"concurrency_limit must be a positive whole number of running jobs, got {limit!r}."
        )
    if rate is not None and rate_limit(model) is None:
        problems.append(
            f"rate_limit must be (starts, period), a positive whole number and a positive "
            f"timedelta, e.g. (10, timedelta(minutes=1)); got {rate!r}."
        )
    if key is not None:
        meta = model._meta
        fields = {field.name for field in meta.concrete_fields}
        if not isinstance(key, str):
            problems.append(f"concurrency_key must be one field name, got {key!r}.")
        elif key not in fields:
            problems.append(f"concurrency_key names {key!r}: no such field on this model.")
        if limit is None and rate is None:
            problems.append(
                "concurrency_key is set without concurrency_limit or rate_limit: it limits "
                "nothing. Add a limit, or remove it."
            )
    if problems or (limit is None and rate is None):
        return problems
    meta = model._meta
    if meta.proxy:
        concrete = meta.concrete_model
        if limits_of(model) != limits_of(concrete):
            problems.append(
                "concurrency_key, concurrency_limit and rate_limit of a proxy must be its "
                f"model's ({concrete._meta.label}): it shares that table, its slots and its "
                "claims. Set them there."
            )
    elif meta.parents:
        problems.append(
            "concurrency_limit and rate_limit are not supported on a multi-table child of a job "
            "model: set them on the parent."
        )
    return problems


def unique_on_problem(model: type[Job]) -> str | None:
    """What is wrong with `model.unique_on`, or None: without a check, a misspelt field would
    leave the model with no constraint at all, and duplicates would pass silently."""
    names = model.unique_on
    if names is None:
        return None
    if not isinstance(names, tuple | list) or not all(isinstance(n, str) for n in names):
        return f"must be a tuple of field names, got {names!r} (a 1-tuple needs its comma)."
    if not names:
        return "is empty: name the fields whose values may have one active job, or remove it."
    meta = model._meta
    if meta.proxy:
        concrete = meta.concrete_model
        if tuple(names) != tuple(concrete.unique_on or ()):
            return (
                f"is {tuple(names)!r}, but a proxy shares its table and constraint with "
                f"{concrete._meta.label}, whose unique_on is {concrete.unique_on!r}: set it there."
            )
        return None
    if meta.parents:
        return "is not supported on a multi-table child of a job model: set it on the parent."
    fields = {field.name for field in meta.concrete_fields}
    if unknown := [name for name in names if name not in fields]:
        return f"names {', '.join(map(repr, unknown))}: no such field on this model."
    return None


@register()
def check_settings(app_configs=None, **kwargs) -> list:
    errors = []
    try:
        validate_retention(retention_days())
    except ValueError as exc:
        errors.append(Error(f"JOBS_RETENTION: {exc}", id="jobs.E006"))
    try:
        metrics_token()
    except ConfigurationError as exc:
        errors.append(Error(str(exc), id="jobs.E009"))
    seconds = lease_seconds()
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 1:
        errors.append(
            Error(
                f"JOBS_LEASE_SECONDS is {seconds!r}; it must be a number of seconds, at least 1.",
                hint="Workers renew leases every quarter of it; 60 is the default.",
                id="jobs.E004",
            )
        )
    timeout = network_timeout()
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 1 <= timeout <= MAX_NETWORK_TIMEOUT
    ):
        errors.append(
            Error(
                f"JOBS_NETWORK_TIMEOUT is {timeout!r}; it must be a number of seconds from 1 to "
                f"{MAX_NETWORK_TIMEOUT}, or None.",
                hint="How long a worker's database connection may stay silent; 10 is the default.",
                id="jobs.E012",
            )
        )
    errors += [Error(problem, id="jobs.E015") for problem in middleware.problems()]
    errors += [Error(problem, id="jobs.E016") for problem in replica_problems()]
    errors += [Error(problem, id="jobs.E018") for problem in memory_tracing_problems()]
    errors += [Error(problem, id="jobs.E019") for problem in pooling_problems()]
    return errors


def pooling_problems() -> list[str]:
    """`JOBS_LISTEN` names a direct PostgreSQL alias or is a switch, and LISTEN never goes
    through a transaction pooler, where it would hear nothing and the workers would wait a
    whole `--interval` for every job."""
    problems = []
    listen = getattr(settings, "JOBS_LISTEN", True)
    pooling = getattr(settings, "JOBS_TRANSACTION_POOLING", False)
    if not isinstance(pooling, bool):
        problems.append(f"JOBS_TRANSACTION_POOLING is {pooling!r}; it must be True or False.")
    if isinstance(listen, str):
        if listen not in connections.settings:
            aliases = ", ".join(sorted(connections.settings))
            problems.append(
                f"JOBS_LISTEN is {listen!r}, which is not in DATABASES: name the alias of a "
                f"direct connection to the job database ({aliases})."
            )
        elif connections[listen].vendor != "postgresql":
            problems.append(
                f"JOBS_LISTEN is {listen!r}, a {connections[listen].vendor} database: "
                "LISTEN needs PostgreSQL."
            )
    elif not isinstance(listen, bool):
        problems.append(f"JOBS_LISTEN is {listen!r}; it must be True, False or a DATABASES alias.")
    elif pooling is True and listen:
        problems.append(
            "JOBS_TRANSACTION_POOLING is on and JOBS_LISTEN is True: LISTEN does not work "
            "through a transaction pooler. Set JOBS_LISTEN to the alias of a direct connection "
            "to the same database, or to False (workers then poll every --interval)."
        )
    return problems


def memory_tracing_problems() -> list[str]:
    """`JOBS_TRACE_MEMORY` is a switch and its threshold a size: anything else would trace
    when not asked, or never report."""
    problems = []
    tracing = getattr(settings, "JOBS_TRACE_MEMORY", False)
    if not isinstance(tracing, bool):
        problems.append(f"JOBS_TRACE_MEMORY is {tracing!r}; it must be True or False.")
    threshold = getattr(settings, "JOBS_TRACE_MEMORY_THRESHOLD_MB", 10)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        problems.append(
            f"JOBS_TRACE_MEMORY_THRESHOLD_MB is {threshold!r}; it must be a number of "
            "megabytes above 0 (10 is the default)."
        )
    return problems


def replica_problems() -> list[str]:
    """What keeps `jobs.contrib.replica` from sending reads where the settings say: without
    its router, or with an alias that is no database, it would read from the primary, or
    fail, with nothing said."""
    try:
        paths = middleware.paths()
    except ConfigurationError:
        return []  # jobs.E015 says so
    if REPLICA_MIDDLEWARE not in paths:
        return []
    problems = []
    alias, aliases = read_replica_setting(), connections.settings
    if alias not in aliases:
        problems.append(
            f"JOBS_READ_REPLICA is {alias!r}, which is not in DATABASES: name the replica's "
            f"alias ({', '.join(sorted(aliases))})."
        )
    if not any(isinstance(each, ReplicaRouter) for each in router.routers):
        problems.append(
            f"JOBS_MIDDLEWARE has {REPLICA_MIDDLEWARE} but DATABASE_ROUTERS lacks "
            f"{REPLICA_ROUTER!r}: without the router, reads stay on the primary."
        )
    return problems


@register()
def check_schedules_and_queues(app_configs=None, **kwargs) -> list:
    """A cron typo must fail `manage.py check` (and stop `runjobs` starting), not go unnoticed
    until the night the job should have run. One error per broken schedule."""
    errors = []
    try:
        configured_queues()
    except ValueError as exc:
        errors.append(Error(str(exc), id="jobs.E008"))
    try:
        schedules = raw_schedules()
    except ValueError as exc:
        return [*errors, Error(str(exc), id="jobs.E007")]
    for name, spec in schedules.items():
        try:
            parse_schedule(name, spec)
        except ValueError as exc:
            errors.append(Error(str(exc), id="jobs.E007"))
    return errors


# The backend job tables need on MariaDB and MySQL (`jobs.db.mysql`), and its module.
MYSQL_BACKEND = "jobs.db.mysql"
MYSQL_BACKEND_MODULE = f"{MYSQL_BACKEND}.base"


@register(Tags.database)
def check_job_databases(app_configs=None, databases=None, **kwargs) -> list:
    """The databases job models write to must be ones jobs can claim from safely."""
    problems = []
    for alias in sorted({router.db_for_write(model) for model in job_models()}):
        connection = connections[alias]
        if connection.vendor not in ENGINES:
            problems.append(
                Error(
                    f"Job models are stored in database {alias!r} ({connection.vendor}), "
                    f"which jobs does not support.",
                    hint=f"Use {' or '.join(sorted(ENGINES))}.",
                    id="jobs.E003",
                )
            )
        elif connection.vendor == "mysql" and type(connection).__module__ != MYSQL_BACKEND_MODULE:
            problems.append(
                Error(
                    f"Job models are stored in database {alias!r} through Django's own MySQL "
                    "backend, which leaves out the conditions of partial indexes and unique "
                    "constraints: unique_on and concurrency limits would not hold.",
                    hint=f"Set its ENGINE to {MYSQL_BACKEND!r} (docs/databases.md).",
                    id="jobs.E020",
                )
            )
        elif (
            connection.vendor == "sqlite"
            and connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
        ):
            problems.append(
                Warning(
                    f"SQLite database {alias!r} does not set transaction_mode IMMEDIATE.",
                    hint="Add 'transaction_mode': 'IMMEDIATE' to its OPTIONS, or concurrent "
                    "run() calls may fail with 'database is locked' instead of waiting.",
                    id="jobs.W001",
                )
            )
    return problems


# Where the Tasks API backend lived before 0.2, and where it is now (an app of its own).
OLD_TASKS_BACKEND = "jobs.backends.tasks.DatabaseBackend"
TASKS_BACKEND = "jobs.contrib.tasks.backend.DatabaseBackend"
TASKS_APP = "jobs.contrib.tasks"


@register()
def check_tasks_backend(app_configs=None, **kwargs) -> list:
    """A `TASKS` backend of ours needs its app; the path before 0.2 is named with the fix."""
    errors = []
    for alias, options in tasks_setting().items():
        backend = options.get("BACKEND") if isinstance(options, dict) else None
        if backend == OLD_TASKS_BACKEND:
            errors.append(
                Error(
                    f"TASKS[{alias!r}]['BACKEND'] is {OLD_TASKS_BACKEND!r}, which moved in 0.2",
                    hint=f"Use {TASKS_BACKEND!r} and add {TASKS_APP!r} to INSTALLED_APPS.",
                    id="jobs.E011",
                )
            )
        elif backend == TASKS_BACKEND and not apps.is_installed(TASKS_APP):
            errors.append(
                Error(
                    f"TASKS[{alias!r}] uses {TASKS_BACKEND!r}, but {TASKS_APP!r} is not in "
                    "INSTALLED_APPS, so there is no table for its tasks",
                    hint=f"Add {TASKS_APP!r} to INSTALLED_APPS and run migrate.",
                    id="jobs.E011",
                )
            )
    return errors
