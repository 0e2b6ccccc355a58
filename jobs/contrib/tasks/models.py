"""`TaskJob`: a call of a `@task` function, as a job row (Django's Tasks API)."""

from __future__ import annotations

from typing import ClassVar

from django.db import models

from jobs.conf import tasks_setting
from jobs.contrib.tasks.calls import perform_task
from jobs.models import Job

TASKS_BACKEND = "jobs.contrib.tasks.backend.DatabaseBackend"


class TaskJob(Job):
    """A call of a function decorated with Django's `@task`, enqueued through
    `jobs.contrib.tasks.backend.DatabaseBackend`: the function's path and JSON arguments,
    and once it has run, its JSON return value. Runs with the same guarantees as any job model.

    One attempt by default, as the Tasks API promises nothing about retries; a task that
    should be retried can be enqueued again, or written as a job model of its own.
    """

    task_path = models.CharField(
        max_length=300, editable=False, help_text="module.function of the @task."
    )
    args = models.JSONField(default=list, blank=True, editable=False)
    kwargs = models.JSONField(default=dict, blank=True, editable=False)
    backend = models.CharField(
        max_length=100, default="default", editable=False, help_text="The TASKS alias."
    )
    return_value = models.JSONField(null=True, blank=True, editable=False)
    run_after = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The task's run_after as enqueued (the row's run_at moves with retries).",
    )

    max_attempts = 1
    framework: ClassVar[bool] = True
    success_fields: ClassVar[tuple[str, ...]] = ("return_value",)

    class Meta:
        verbose_name = "task"
        # The table the jobs app created before the Tasks API became an app of its own.
        db_table = "jobs_taskjob"

    @classmethod
    def in_use(cls) -> bool:
        """Whether some `TASKS` backend stores tasks here: otherwise workers need not ask."""
        return any(options.get("BACKEND") == TASKS_BACKEND for options in tasks_setting().values())

    def __str__(self) -> str:
        return f"task {self.task_path} #{self.pk}"

    def perform(self) -> None:
        """Call the registered task (never anything the row merely names) and keep what it
        returned: a success field, written with the outcome, so only while this attempt
        still holds the row, and in the worker's batch rather than a statement of its own."""
        self.return_value = perform_task(self)
