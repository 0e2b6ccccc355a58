"""The protocol of one attempt: claim it, perform it, record how it ended, or give it back.

Every write an attempt makes after its claim is guarded by the claim itself (the attempt
number and the claimant, `Job._claim()`): an attempt whose row was rescued and claimed again
cannot overwrite the newer attempt, and its outcome is dropped with a warning instead. An
outcome is recorded after `perform()` returns, in its own statement: a process that dies
between the two leaves the row running until its lease runs out and it is rescued.

The functions take a job instance and work on its row through the job's own row methods
(`_same_row`, `_transition_row`, `_claim`); this module never imports `jobs.models`. So
`Job.run()` can call it, as the runtime does: a job thread performs (`execute`), the worker
loop gives an attempt up (`hand_back`, `time_out`), and the lease keeper renews
(`jobs.lease`).
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from django.db import transaction

from jobs import signals, timesource
from jobs.db.base import claim_changes
from jobs.errors import Cancelled, JobNotRunnable, JobTimeout, Snooze
from jobs.identity import process_identity
from jobs.joblog import capturing
from jobs.lease import LeaseKeeper
from jobs.states import RUNNABLE_STATES, JobState

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

ERROR_MESSAGE_LIMIT = 2_000
TRACEBACK_LIMIT = 16_000
ERROR_HISTORY_LIMIT = 10
HISTORY_TRACEBACK_LIMIT = 4_000
HISTORY_LOG_LIMIT = 4_000


def run(job: Job) -> None:
    """Claim `job` and perform it here, in this thread, renewing its lease meanwhile.

    What `Job.run()` does; see there. Raises `JobNotRunnable` if another process has it.
    """
    claim_for_run(job)
    with LeaseKeeper() as leases:
        leases.hold(job)
        execute(job)


def claim_for_run(job: Job) -> None:
    """Claim `job` for an attempt in this thread, or raise `JobNotRunnable`.

    Takes the row lock (`SELECT ... FOR UPDATE`) and commits the claim before returning, so
    of two concurrent calls one claims and the other finds the row running.
    """
    rows = job._same_row().select_for_update()
    with transaction.atomic(using=rows.db):
        current = rows.values("state", "attempts", "requested_at").first()
        if current is None:
            raise JobNotRunnable(f"{job.label} does not exist (deleted?)")
        if current["state"] not in RUNNABLE_STATES:
            raise JobNotRunnable(f"{job.label} is {current['state']}, not new or pending")
        now = timesource.now()
        job._transition_row(
            RUNNABLE_STATES,
            JobState.RUNNING,
            attempts=current["attempts"] + 1,
            requested_at=current["requested_at"] or now,
            **claim_changes(now, process_identity()),
        )


def execute(job: Job) -> None:
    """Perform an attempt this process has claimed, and record how it ended.

    The outcome is written only if the row is still this attempt's (same attempt number
    and claimant): a worker that lost its claim cannot overwrite a newer attempt. A
    `SystemExit` or `KeyboardInterrupt` from `perform()` is recorded as a failure like
    any other (so a job that exits every time still runs out of attempts), then raised
    again for the caller. What the attempt logs is kept on the row with its outcome.
    """
    with capturing(job.mask) as job._log:
        logger.info(
            "%s started (queue %s, attempt %d of %d)",
            job.label,
            job.queue,
            job.attempts,
            job.max_attempts,
        )
        signals.send(signals.job_started, job)
        began = time.monotonic()
        try:
            job.perform()
        except Snooze as snooze:
            _record(job, _snooze_outcome(job, snooze), began)
        except Cancelled:
            _record(job, (JobState.CANCELLED, {"finished_at": timesource.now()}), began)
        except BaseException as exc:
            _record(job, _failure_outcome(job, exc, traceback.format_exc()), began, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _record(job, (JobState.SUCCEEDED, {"finished_at": timesource.now()}), began)


def time_out(job: Job, began: float, stack: str) -> None:
    """Record that this attempt overran its timeout; `stack` shows where it was stuck."""
    exc = JobTimeout(f"{job.label} ran longer than its timeout of {job.timeout} s")
    _record(
        job, _failure_outcome(job, exc, f"Stack of the job at its timeout:\n{stack}"), began, exc
    )


def hand_back(job: Job) -> bool:
    """Return an attempt this worker cannot finish (shutdown) to the queue, uncounted.

    A job someone asked to stop is not worth handing back: it ends cancelled.
    """
    running = frozenset({JobState.RUNNING})
    if (
        job._same_row(**job._claim())
        .exclude(cancel_requested_at=None)
        ._transition(
            running, JobState.CANCELLED, finished_at=timesource.now(), lease_expires_at=None
        )
    ):
        logger.warning("%s cancelled on shutdown, as asked", job.label)
        return True
    handed_back = job._transition_row(
        running,
        JobState.PENDING,
        guard=job._claim(),
        attempts=job.attempts - 1,
        run_at=timesource.now(),
        claimed_by="",
        lease_expires_at=None,
    )
    if handed_back:
        logger.warning("%s handed back to the queue unfinished", job.label)
    return handed_back


def _record(
    job: Job,
    outcome: tuple[str, dict[str, Any]],
    began: float,
    exc: BaseException | None = None,
) -> None:
    """Write how the attempt ended (if the row is still this attempt's), then say so in
    the log and through the lifecycle signals. `exc` is what failed it, if anything."""
    to_state, changes = outcome
    took = time.monotonic() - began
    if job._log is not None:
        changes = {**changes, "log": job._log.text()}
    if not job._transition_row(
        frozenset({JobState.RUNNING}), to_state, guard=job._claim(), **changes
    ):
        logger.warning(
            "%s attempt %d ended after %.3fs but the row moved on (now %s); outcome not recorded",
            job.label,
            job.attempts,
            took,
            job._current_state(),
        )
    elif to_state == JobState.SUCCEEDED:
        logger.info("%s succeeded in %.3fs", job.label, took)
        signals.send(signals.job_succeeded, job, duration=took)
    elif to_state == JobState.CANCELLED:
        logger.info("%s stopped after %.3fs: cancelled, as asked", job.label, took)
    elif exc is not None:
        _report_failure(job, exc, took)
    else:
        logger.info("%s snoozed until %s", job.label, f"{job.run_at:%Y-%m-%d %H:%M:%S}")


def _report_failure(job: Job, exc: BaseException, took: float) -> None:
    """A retry is a warning; a job failed for good is an error, with its exception
    attached, so an error tracker's logging integration files it with no glue."""
    extra = {**job.log_context(), "job_error_type": job.error_type}
    if job.state == JobState.PENDING:
        logger.warning(
            "%s failed in %.3fs: %s: %s; retry at %s",
            job.label,
            took,
            job.error_type,
            job.error_message,
            f"{job.run_at:%Y-%m-%d %H:%M:%S}",
            extra=extra,
        )
        signals.send(signals.job_retried, job, duration=took, exception=exc)
    else:
        logger.error(
            "%s failed in %.3fs after %d attempt(s): %s: %s",
            job.label,
            took,
            job.attempts,
            job.error_type,
            job.error_message,
            exc_info=exc,
            extra=extra,
        )
        signals.send(signals.job_failed, job, duration=took, exception=exc)


def _snooze_outcome(job: Job, snooze: Snooze) -> tuple[str, dict[str, Any]]:
    """Back to pending after the delay; the attempt is given back, no error recorded."""
    return JobState.PENDING, {
        "attempts": job.attempts - 1,
        "run_at": timesource.now() + snooze.delay,
        "claimed_by": "",
        "lease_expires_at": None,
    }


def _failure_outcome(
    job: Job, exc: BaseException, formatted_traceback: str
) -> tuple[str, dict[str, Any]]:
    """Retry later or fail for good, with the error kept on the row and in its history."""
    now = timesource.now()
    formatted_traceback = job.mask(formatted_traceback)
    error = {
        "error_type": _qualified_name(type(exc)),
        "error_message": _bounded(job.mask(str(exc)), ERROR_MESSAGE_LIMIT),
        "error_traceback": _bounded(formatted_traceback, TRACEBACK_LIMIT, keep_end=True),
    }
    entry = {
        "attempt": job.attempts,
        "at": now.isoformat(),
        "worker": job.claimed_by,
        "type": error["error_type"],
        "message": error["error_message"],
        "traceback": _bounded(formatted_traceback, HISTORY_TRACEBACK_LIMIT, keep_end=True),
        "log": _bounded(job._log.text(), HISTORY_LOG_LIMIT, keep_end=True)
        if job._log is not None
        else "",
    }
    changes = {**error, "error_history": [*job.error_history, entry][-ERROR_HISTORY_LIMIT:]}
    if job.attempts < job.max_attempts and _retries_after(job, exc):
        return JobState.PENDING, {**changes, "run_at": now + job.retry_delay(job.attempts)}
    return JobState.FAILED, {**changes, "finished_at": now}


def _retries_after(job: Job, exc: BaseException) -> bool:
    return isinstance(exc, job.retry_on) and not isinstance(exc, job.discard_on)


def _qualified_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Cut long text to `limit` characters, saying how much was cut.

    A message is best read from its start; a traceback from its end, where the frame that
    raised is.
    """
    if len(text) <= limit:
        return text
    marker = f"[{len(text) - limit} characters cut]"
    kept = limit - len(marker) - 1
    return f"{marker}\n{text[-kept:]}" if keep_end else f"{text[:kept]}\n{marker}"
