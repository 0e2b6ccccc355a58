"""Every concrete job model in the installed apps, found through Django's app registry.

Nothing registers itself at import time: the list is computed from `apps.get_models()`, so
it is always exactly what INSTALLED_APPS says.
"""

from django.apps import apps
from django.db import connections, router

from jobs.models.job import Job


def job_models() -> list[type[Job]]:
    """Concrete, non-proxy job models in a stable order (by app label and model name)."""
    found = [
        model for model in apps.get_models() if issubclass(model, Job) and not model._meta.proxy
    ]
    return sorted(found, key=lambda model: model._meta.label_lower)


def served_models() -> list[type[Job]]:
    """What a worker claims from: every job model in use (`Job.in_use()`). The framework's
    own (latency probes, tasks) are in use only where configured; otherwise every claim round
    would also ask an always-empty table."""
    return [model for model in job_models() if model.in_use()]


def domain_models() -> list[type[Job]]:
    """The job models a project defined: all but the framework's own (`Job.framework`)."""
    return [model for model in job_models() if not model.framework]


def queues_with_defaults() -> set[str]:
    """Queues some job model sends its rows to unless a row says otherwise."""
    return {model._meta.get_field("queue").default for model in job_models()}


def models_without_tables(models: list[type[Job]]) -> list[type[Job]]:
    """Job models whose table does not exist yet, i.e. `migrate` has not been run."""
    tables: dict[str, list[str]] = {}
    missing = []
    for model in models:
        using = router.db_for_write(model)
        if using not in tables:
            tables[using] = connections[using].introspection.table_names()
        if model._meta.db_table not in tables[using]:
            missing.append(model)
    return missing
