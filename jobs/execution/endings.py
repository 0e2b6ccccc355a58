"""What an attempt's ending writes on its row: success, a snooze, a retry or a failure.

Pure functions of the job and how `perform()` ended: the attempt protocol
(`jobs.execution`) decides when to write them, and fences the write on the claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs import timesource
from jobs.errors import Snooze
from jobs.joblog import bounded, with_history
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models import Job

ERROR_MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 16_000


def success_changes(job: Job) -> dict[str, Any]:
    """Succeeded now, with what `perform()` left in the model's `success_fields`; an earlier
    attempt's error is cleared from the row (its history keeps it, and a rescue's too), so a
    row that succeeded never shows an error as its own."""
    changes: dict[str, Any] = {"finished_at": timesource.now()}
    changes.update((name, getattr(job, name)) for name in type(job).success_fields)
    if job.error_type or job.error_message or job.error_traceback:
        changes.update(error_type="", error_message="", error_traceback="")
    return changes


def snooze_outcome(job: Job, snooze: Snooze) -> tuple[str, dict[str, Any]]:
    """Back to pending after the delay; the attempt is given back, no error recorded."""
    return JobState.PENDING, {
        "attempts": job.attempts - 1,
        "run_at": timesource.now() + snooze.delay,
        "claimed_by": "",
        "lease_expires_at": None,
    }


def failure_outcome(
    job: Job, exc: BaseException, formatted_traceback: str
) -> tuple[str, dict[str, Any]]:
    """Retry later or fail for good, with the error kept on the row and in its history."""
    now = timesource.now()
    formatted_traceback = job.mask(formatted_traceback)
    error = {
        "error_type": _qualified_name(type(exc)),
        "error_message": bounded(job.mask(str(exc)), ERROR_MESSAGE_LIMIT),
        "error_traceback": bounded(formatted_traceback, TRACEBACK_LIMIT, keep_end=True),
    }
    log = job._log.text() if job._log is not None else ""
    history = with_history(
        job, now, error["error_type"], error["error_message"], formatted_traceback, log
    )
    changes = {**error, "error_history": history}
    if job.attempts < job.max_attempts and _retries_after(job, exc):
        return JobState.PENDING, {**changes, "run_at": now + job.retry_delay(job.attempts)}
    return JobState.FAILED, {**changes, "finished_at": now}


def killed_outcome(job: Job, exc: BaseException, stack: str) -> tuple[str, dict[str, Any]]:
    """Failed for good: an operator killed it (`JobKilled`), so it is not retried, whatever
    attempts it has left; the stack at that moment is its traceback."""
    _state, changes = failure_outcome(job, exc, stack)
    changes.pop("run_at", None)
    return JobState.FAILED, {**changes, "finished_at": timesource.now()}


def _retries_after(job: Job, exc: BaseException) -> bool:
    return isinstance(exc, job.retry_on) and not isinstance(exc, job.discard_on)


def _qualified_name(cls: type) -> str:
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"
