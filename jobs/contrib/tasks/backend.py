"""A backend for Django's Tasks API: `@task` functions enqueued as `TaskJob` rows.

    TASKS = {"default": {"BACKEND": "jobs.contrib.tasks.backend.DatabaseBackend"}}

The API is Django's own from Django 6.0 (`from django.tasks import task`) and the
`django-tasks` package's on Django 5.2 (`from django_tasks import task`); this backend
subclasses whichever base backend this Django has (`jobs.contrib.tasks.api`).

A task enqueued here is a row like any other job: written in the caller's transaction, run
by `runjobs` with the same guarantees, shown in the admin, and answered by `get_result()`
from any process.

Needs `"jobs.contrib.tasks"` in `INSTALLED_APPS` (the `TaskJob` table). Which functions a
worker may run, and how a row's call looks through the API, is `jobs.contrib.tasks.calls`'s.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from django.core import checks

from jobs.contrib.tasks.api import (
    BaseTaskBackend,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    task_enqueued,
)
from jobs.contrib.tasks.calls import RegisteredTask, enqueued_task, json_ready, task_result
from jobs.contrib.tasks.models import TaskJob

OPTIONS = ("MODULES",)


class DatabaseBackend(BaseTaskBackend):
    task_class = RegisteredTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        # Earlier versions of the API had this per-backend switch; a row written in the
        # caller's transaction is what True promised, and False cannot be offered.
        self.enqueue_on_commit = params.get("ENQUEUE_ON_COMMIT", True)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Insert the task's row, pending, in the caller's transaction: it exists for workers
        only if that transaction commits, which is what `transaction.on_commit` gives other
        backends, without the gap between the commit and the enqueue."""
        self.validate_task(task)
        job = TaskJob(
            task_path=task.module_path,
            args=json_ready(list(args), f"the arguments of {task.module_path}"),
            kwargs=json_ready(dict(kwargs), f"the keyword arguments of {task.module_path}"),
            backend=self.alias,
            run_after=task.run_after,
        )
        job.enqueue(run_at=task.run_after, priority=task.priority, queue=task.queue_name)
        result = task_result(job, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        job = TaskJob.objects.filter(pk=_primary_key(result_id), backend=self.alias).first()
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        return task_result(job, enqueued_task(job))

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        if self.enqueue_on_commit is not True:
            yield checks.Error(
                f"TASKS[{self.alias!r}]['ENQUEUE_ON_COMMIT'] is {self.enqueue_on_commit!r}; "
                "this backend writes each task in the caller's transaction, so a task always "
                "exists exactly when that transaction commits",
                hint="Remove the setting, or set it to True.",
                id="jobs.E010",
            )
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            yield checks.Error(
                f"TASKS[{self.alias!r}]['OPTIONS'] has unknown option(s) {', '.join(unknown)}; "
                f"this backend takes {', '.join(OPTIONS)}",
                id="jobs.E010",
            )
        for module in self.options.get("MODULES", []):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                yield checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['MODULES'] lists {module!r}, which "
                    f"cannot be imported: {exc}",
                    id="jobs.E010",
                )


def _primary_key(result_id: object) -> int:
    try:
        return int(result_id)
    except (TypeError, ValueError):
        raise TaskResultDoesNotExist(result_id) from None
