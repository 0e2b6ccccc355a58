"""Django's Tasks API, from wherever this Django has it: `django.tasks` on Django 6.0 and
later, the `django-tasks` package (its backport) on Django 5.2.

The two spell the same names the same way (but for the backport's `InvalidTaskError`,
`InvalidTask` here), so the backend and the calls import them from
here and have one code path; so do the tests and the example project, which run on both.
A project on one Django writes that Django's own import (`from django.tasks import task`,
or `from django_tasks import task` on 5.2); this module is for code that must run on both.

Where Django has `django.tasks`, that is used even if `django-tasks` is installed too: the
`TASKS` setting and `@task` are Django's own there, and a backend must subclass Django's
`BaseTaskBackend` to be configured at all.
"""

from __future__ import annotations

try:
    from django.tasks import default_task_backend, task, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started

    BUILT_IN = True
    PACKAGE = "django.tasks"
except ImportError:  # Django 5.2: the backport
    from django_tasks import default_task_backend, task, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started

    BUILT_IN = False
    PACKAGE = "django_tasks"

# The API's own backend that runs a task at once, in the caller (for tests and benchmarks).
IMMEDIATE_BACKEND = f"{PACKAGE}.backends.immediate.ImmediateBackend"

__all__ = [
    "BUILT_IN",
    "IMMEDIATE_BACKEND",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "default_task_backend",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
