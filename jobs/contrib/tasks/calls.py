"""What a `TaskJob` row's call is: the registered `@task` it names, and how it runs and
looks through the Tasks API.

A worker runs only functions that were decorated for a backend of this app: decorating
registers the function under its module path, and a row is looked up there. The path a row
holds is never imported; the modules that define tasks are found the way the admin finds
`admin.py`, as the `tasks` module of each installed app, plus any listed in a backend's
`OPTIONS["MODULES"]`.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

from jobs.contrib.tasks.api import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_backends,
    task_finished,
    task_started,
)
from jobs.errors import JobError
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.contrib.tasks.models import TaskJob

STATUSES = {
    JobState.NEW: TaskResultStatus.READY,
    JobState.PENDING: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,
}

# Every task decorated for a backend of this class, by module path: what workers may run.
REGISTRY: dict[str, Task] = {}


class UnregisteredTask(JobError):
    """A row names a path that is not a registered task: refused, never imported."""


class RegisteredTask(Task):
    """A task of this backend: creating one (what `@task` does) registers it, so a worker
    can find the function a row names without importing what the row says."""

    __slots__ = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        REGISTRY.setdefault(self.module_path, self)  # `using()` copies keep the original


def json_ready(value: Any, what: str) -> Any:
    """`value` as it will come back from the database, or a TypeError now, in the caller,
    rather than a surprise in the worker. A value JSON would change (an integer dict key
    becoming a string, NaN) is refused too."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{what} must be JSON (lists, dicts, str, int, float, bool, None): {exc}"
        ) from None
    if (stored := json.loads(text)) != _as_lists(value):
        raise TypeError(
            f"{what} would not survive JSON unchanged (e.g. a dict key that is not a string): "
            f"{value!r} would come back as {stored!r}"
        )
    return stored


def _as_lists(value: Any) -> Any:
    """Tuples as lists, as JSON keeps them (the API promises lists back)."""
    if isinstance(value, list | tuple):
        return [_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_lists(item) for key, item in value.items()}
    return value


def registered_task(path: str) -> Task:
    """The task a row names, from the registry filled by decorating; never by importing
    `path` itself."""
    if path not in REGISTRY:
        _discover_task_modules()
    try:
        return REGISTRY[path]
    except KeyError:
        raise UnregisteredTask(
            f"{path!r} is not a registered task, so it is not run: decorate the function "
            "with @task for a backend using jobs.contrib.tasks.backend.DatabaseBackend, in an "
            "installed app's tasks module or a module in the backend's OPTIONS['MODULES']"
        ) from None


def enqueued_task(job: TaskJob) -> Task:
    """The task a row was enqueued as: the registered one with what `using()` changed (its
    priority and queue as the row has them now, its run_after and backend as enqueued), so a
    result read back compares equal to the one `enqueue()` returned."""
    return replace(
        registered_task(job.task_path),
        priority=job.priority,
        queue_name=job.queue,
        run_after=job.run_after,
        backend=job.backend,
    )


def _discover_task_modules() -> None:
    autodiscover_modules("tasks")
    for backend in task_backends.all():
        if issubclass(backend.task_class, RegisteredTask):
            for module in backend.options.get("MODULES", []):
                importlib.import_module(module)


def perform_task(job: TaskJob) -> Any:
    """Run the task a `TaskJob` row names, as the API's workers do: its signals around the
    call, its context if it takes one. Returns the JSON return value."""
    task = enqueued_task(job)
    sender = type(task_backends[job.backend])
    result = task_result(job, task)
    task_started.send(sender, task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *job.args, **job.kwargs)
        else:
            value = task.call(*job.args, **job.kwargs)
        value = json_ready(value, f"the return value of {job.task_path}")
    except BaseException:
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        task_finished.send(sender, task_result=result)
        raise
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    task_finished.send(sender, task_result=result)
    return value


def task_result(job: TaskJob, task: Task) -> TaskResult:
    """The API's view of a row: its status, times, errors and return value."""
    history = job.error_history
    errors = [
        TaskError(exception_class_path=_class_path(entry["type"]), traceback=entry["traceback"])
        for entry in history
    ]
    if job.state == JobState.FAILED and not any(e["attempt"] == job.attempts for e in history):
        errors.append(  # a failure not kept in the history: the worker was lost
            TaskError(
                exception_class_path=_class_path(job.error_type),
                traceback=job.error_traceback or job.error_message,
            )
        )
    workers = [entry["worker"] for entry in history][-job.attempts :] if job.attempts else []
    workers += [job.claimed_by] * (job.attempts - len(workers))
    result = TaskResult(
        task=task,
        id=str(job.pk),
        status=STATUSES[job.state],
        enqueued_at=job.requested_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        last_attempted_at=job.started_at,
        args=job.args,
        kwargs=job.kwargs,
        backend=job.backend,
        errors=errors,
        worker_ids=workers,
    )
    object.__setattr__(result, "_return_value", job.return_value)
    return result


def _class_path(name: str) -> str:
    """Our rows keep builtins unqualified ("ValueError"); the API wants an import path."""
    return name if "." in name else f"builtins.{name}"
