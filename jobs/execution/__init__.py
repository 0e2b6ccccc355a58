"""The protocol of one attempt: claim it, perform it, record how it ended, or give it back.

Every write an attempt makes after its claim is guarded by the claim itself (the attempt
number and the claimant, `Job._claim()`): an attempt whose row was rescued and claimed again
cannot overwrite the newer attempt, and its outcome is dropped with a warning instead. An
outcome is written after `perform()` returns (`attempt()` then `record()`): a process that
dies between the two leaves the row running until its lease runs out and it is rescued. A
worker writes the outcomes of all its job threads that finished since its last claim in one
statement per model and kind of outcome, fenced row by row, in its claim's transaction.

What an outcome stores from the job's own text (its log, its exception's message and
traceback) is made storable first (`jobs.joblog.storable`). If the database still refuses an
outcome, it is written again alone, and if refused again, a minimal one takes its place: the
same state, with a note naming the refusal instead of the text (`record_each`). Only a lost
connection leaves the row running, to be rescued. `perform()` runs inside the project's
`JOBS_MIDDLEWARE` (`jobs.execution.middleware`).

The functions work on a job's row through its own row methods (`_same_row`, `_transition_row`,
`_claim`), never importing `jobs.models`, so `Job.run()` can call them (`execute`), as the
runtime does: a job thread performs (`attempt`, then `report` once settled), the worker loop
writes outcomes (`record`, `settle`) and gives attempts up (`hand_back`, `time_out`), and the
lease keeper renews (`jobs.lease`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, DataError, connections, transaction

from jobs import signals, timesource
from jobs.db import engine_for
from jobs.db.base import claim_changes
from jobs.db.limits import admission, limits_of
from jobs.db.outage import CONNECTION_ERRORS
from jobs.db.wakeup import hint_for, payload
from jobs.errors import Cancelled, JobKilled, JobNotRunnable, JobTimeout, Snooze
from jobs.execution import endings, middleware
from jobs.identity import process_identity
from jobs.joblog import capturing, masking, storable, without_job_text
from jobs.lease import LeaseKeeper
from jobs.states import RUNNABLE_STATES, JobState, check_transition

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

RUNNING = frozenset({JobState.RUNNING})


def run(job: Job) -> None:
    """Claim `job` and perform it here, in this thread, renewing its lease meanwhile.

    What `Job.run()` does; see there. Raises `JobNotRunnable` if another process has it.
    """
    claim_for_run(job)
    perform_claimed(job)


def perform_claimed(job: Job) -> None:
    """Perform an attempt this thread has claimed (`claim_for_run`), renewing its lease."""
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
        changes = claim_changes(now, process_identity())
        if (limits := limits_of(type(job))) is not None:  # take a slot, or JobNotRunnable
            engine_for(rows.db).lock_claims(type(job))
            changes.update(admission(job, limits, now, rows.db))
        job._transition_row(
            RUNNABLE_STATES,
            JobState.RUNNING,
            attempts=current["attempts"] + 1,
            requested_at=current["requested_at"] or now,
            **changes,
        )


@dataclass(eq=False)
class Outcome:
    """How one attempt ended, before and after it is written to the row.

    `attempt()` makes it; `record()` writes it, fenced by the claim; `settle()` says whether
    it was written (`recorded`) and wakes whoever waits for that; `report()` logs it and sends
    the lifecycle signals. A worker writes many of them in one transaction (`record()`), so a
    busy worker commits once per batch, not once per job.
    """

    job: Job
    to_state: str
    changes: dict[str, Any]
    took: float
    exc: BaseException | None = None
    # Once settled: True (written), False (the row had moved on) or None (not written: the
    # database could not be reached or refused it, or the job's own connection broke; the row
    # stays running until its lease runs out and it is rescued; `why_unrecorded` says which).
    recorded: bool | None = None
    # False when perform() failed because this thread's own connection to the job's database
    # broke (see `_lost_its_database`): then nothing is written and the row is rescued.
    writable: bool = True
    # False when the attempt was not started: its lease had run out before perform() could
    # begin (see `_lease_ran_out`); it is handed back, and was logged when it was not started.
    started: bool = True
    why_unrecorded: str = ""  # when `recorded` is None: why, for the log
    _settled: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self.changes = {name: storable(value) for name, value in self.changes.items()}

    def wait_until_settled(self) -> None:
        self._settled.wait()


def execute(job: Job) -> None:
    """Perform an attempt this process has claimed, and record how it ended.

    The outcome is written only if the row is still this attempt's (same attempt number
    and claimant): a worker that lost its claim cannot overwrite a newer attempt. A
    `SystemExit` or `KeyboardInterrupt` from `perform()` is recorded as a failure like
    any other (so a job that exits every time still runs out of attempts), then raised
    again for the caller. What the attempt logs is kept on the row with its outcome.
    """
    outcome = attempt(job)
    settle([outcome], record_each([outcome], using=job._state.db or DEFAULT_DB_ALIAS))
    report(outcome)
    if outcome.exc is not None and not isinstance(outcome.exc, Exception):
        raise outcome.exc


def attempt(job: Job) -> Outcome:
    """Perform an attempt this process has claimed and say how it ended; writes nothing.

    What the attempt logs is captured for the row (`changes["log"]`). An attempt whose
    lease has already run out is not started (`_lease_ran_out`).
    """
    if _lease_ran_out(job):
        return _not_started(job)
    job._thread_id = threading.get_ident()  # where its stack is read from (`jobs.lease`)
    try:
        return _perform(job)
    finally:
        job._thread_id = None


def _perform(job: Job) -> Outcome:
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
        exc = None
        try:
            middleware.chain()(job)  # job.perform(), inside JOBS_MIDDLEWARE
        except Snooze as snooze:
            to_state, changes = endings.snooze_outcome(job, snooze)
        except Cancelled:
            to_state, changes = JobState.CANCELLED, {"finished_at": timesource.now()}
        except BaseException as raised:
            exc = raised
            to_state, changes = endings.failure_outcome(job, raised, traceback.format_exc())
        else:
            to_state, changes = JobState.SUCCEEDED, endings.success_changes(job)
        outcome = Outcome(job, to_state, {**changes, "log": job._log.text()}, _since(began), exc)
        if _lost_its_database(job, exc):
            outcome.writable = False
            outcome.why_unrecorded = "its database connection broke while it ran"
        return outcome


def _lease_ran_out(job: Job) -> bool:
    """Whether this attempt's claim may already be another's: its lease has run out (or
    its lease keeper found the row taken) before perform() began.

    Between the claim and this check the process may have been frozen (SIGSTOP, a paused
    VM) or the claim's reply held up by the network for longer than a lease; by then
    another worker may have rescued the row and started the job. The last moment to find
    out without a round trip is here: "now" is the database's (`jobs.timesource`), and the
    lease keeper keeps `lease_expires_at` up to date as it renews.
    """
    if job._claim_lost:
        return True
    return job.lease_expires_at is not None and timesource.now() >= job.lease_expires_at


def _not_started(job: Job) -> Outcome:
    """An attempt given back unperformed, uncounted, written like any outcome (fenced: if
    the row was rescued meanwhile, nothing is written)."""
    logger.warning(
        "%s not started: its lease ran out at %s, before it could start (was this worker "
        "frozen, or the claim's reply late?); handing it back",
        job.label,
        f"{job.lease_expires_at:%H:%M:%S.%f}"[:-3] if job.lease_expires_at else "?",
        extra=job.log_context(),
    )
    job.lose_claim()
    outcome = Outcome(job, JobState.PENDING, _handed_back_changes(job), 0.0)
    outcome.started = False
    return outcome


def _handed_back_changes(job: Job) -> dict[str, Any]:
    """Back to pending, due now, the attempt uncounted, the claim and lease cleared."""
    return {
        "attempts": job.attempts - 1,
        "run_at": timesource.now(),
        "claimed_by": "",
        "lease_expires_at": None,
    }


def _lost_its_database(job: Job, exc: BaseException | None) -> bool:
    """Whether perform() failed because the connection to the job's database broke under it.

    That failure is the database's, not the job's: it is not written (a retry policy would
    otherwise fail the job for good over an outage). The row stays running until its lease
    runs out and it is rescued, as if its worker had died, and the attempt counts.
    """
    if not isinstance(exc, CONNECTION_ERRORS):
        return False
    connection = connections[job._state.db or DEFAULT_DB_ALIAS]
    return connection.connection is None or not connection.is_usable()


def record(outcomes: Sequence[Outcome], *, using: str) -> list[bool | None]:
    """Write `outcomes` to their rows, each only if the row is still that attempt's.

    One UPDATE per model and shape of change (`Engine.move_rows`), in the caller's
    transaction if there is one, so a batch of outcomes costs one commit. Returns, in order,
    whether each was written (None for one not `writable`); the instances are not touched
    (see `settle()`). A value the
    database refuses fails the whole batch (`DatabaseError`, also for text the driver cannot
    encode): then `record_each()`.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    written: list[bool | None] = [None] * len(outcomes)  # None: not to be written
    for index, outcome in enumerate(outcomes):
        if outcome.writable:
            groups[(type(outcome.job), outcome.to_state, tuple(outcome.changes))].append(index)
    if not groups:
        return written
    engine = engine_for(using)
    try:
        with transaction.atomic(using=using, savepoint=False):
            for (model, to_state, _shape), indexes in groups.items():
                check_transition(RUNNING, to_state)
                rows = [(outcomes[i].job, outcomes[i].changes) for i in indexes]
                if to_state == JobState.PENDING:  # a retry or a snooze: wake its queue's workers
                    moved = [
                        engine.move_row(
                            job,
                            RUNNING,
                            to_state,
                            guard=job._claim(),
                            changes=changes,
                            wake=payload(hint_for(changes.get("queue", job.queue), model)),
                        )
                        for job, changes in rows
                    ]
                else:
                    moved, followed = engine.move_rows(model, RUNNING, to_state, rows)
                    finished = [job for (job, _), ok in zip(rows, moved, strict=True) if ok]
                    _announce_freed_slots(engine, model, finished)
                    if followed:  # jobs wait on these: release or cancel them, now
                        model._ended(using, to_state, followed)
                for i, ok in zip(indexes, moved, strict=True):
                    written[i] = ok
    except UnicodeError as exc:  # refused by the driver before it reached the database
        raise DataError(f"the driver could not encode an outcome: {exc}") from exc
    return written


def _announce_freed_slots(engine: Any, model: type[Job], finished: list[Job]) -> None:
    """Wake the workers of the queues where finished jobs of a concurrency-limited model held
    slots, at commit: an idle worker whose rows wait for a slot claims at once, instead of
    within its poll interval (`jobs.runtime.claims`)."""
    limits = limits_of(model)
    if finished and engine.wakes_workers and limits is not None and limits.concurrency is not None:
        engine.wake_workers({payload(hint_for(job.queue, model)) for job in finished})


def record_each(outcomes: Sequence[Outcome], *, using: str) -> list[bool | None]:
    """`record()` one outcome at a time, each in its own transaction, so one the database
    refuses does not keep the others from being written. A refused outcome is written
    again as a minimal one (`jobs.joblog.without_job_text`): the state the attempt reached,
    with a note naming the refusal in place of the job's text. Only if that is refused too
    does the row stay running until it is rescued. A lost connection is raised, for the
    caller to wait out."""
    written: list[bool | None] = []
    for outcome in outcomes:
        try:
            written.extend(record([outcome], using=using))
            continue
        except DatabaseError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            refusal = exc
        logger.warning(
            "the database refused the outcome of %s (%s); writing it without the job's text",
            outcome.job.label,
            refusal,
        )
        changes = without_job_text(outcome.job, outcome.changes, refusal, timesource.now())
        minimal = Outcome(outcome.job, outcome.to_state, changes, outcome.took, outcome.exc)
        try:
            (ok,) = record([minimal], using=using)
        except DatabaseError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise
            logger.exception("could not record even a minimal outcome of %s", outcome.job.label)
            outcome.why_unrecorded, ok = "the database refused it", None
        else:
            outcome.changes = minimal.changes
        written.append(ok)
    return written


def settle(outcomes: Sequence[Outcome], written: Sequence[bool | None]) -> None:
    """After the transaction that wrote them has committed: the written outcomes become the
    instances' state, and whoever waits on an outcome learns whether it was written (None:
    the database could not be reached)."""
    for outcome, ok in zip(outcomes, written, strict=True):
        if ok:
            outcome.job.state = outcome.to_state
            for name, value in outcome.changes.items():
                setattr(outcome.job, name, value)
        outcome.recorded = ok
        outcome._settled.set()


def report(outcome: Outcome) -> None:
    """Say how a settled attempt ended: in the log, and through the lifecycle signals,
    with the job's secrets masked as in its own log lines."""
    with masking(outcome.job.mask):
        _report(outcome)


def _report(outcome: Outcome) -> None:
    job, took = outcome.job, outcome.took
    if not outcome.started:
        return  # said when it was not started (`_not_started`); handed back, or rescued
    if outcome.recorded is None:
        logger.warning(
            "could not record the outcome of %s (%s); it will be rescued when its lease runs out",
            job.label,
            outcome.why_unrecorded or "the database could not be reached",
            extra=job.log_context(),
        )
    elif not outcome.recorded:
        logger.warning(
            "%s attempt %d ended after %.3fs but the row moved on (now %s); outcome not recorded",
            job.label,
            job.attempts,
            took,
            job._current_state(),
        )
    elif outcome.to_state == JobState.SUCCEEDED:
        logger.info("%s succeeded in %.3fs", job.label, took)
        signals.send(signals.job_succeeded, job, duration=took)
    elif outcome.to_state == JobState.CANCELLED:
        logger.info("%s stopped after %.3fs: cancelled, as asked", job.label, took)
    elif outcome.exc is not None:
        _report_failure(job, outcome.exc, took)
    else:
        logger.info("%s snoozed until %s", job.label, f"{job.run_at:%Y-%m-%d %H:%M:%S}")


def _since(began: float) -> float:
    return time.monotonic() - began


def time_out(job: Job, began: float, stack: str) -> None:
    """Record that this attempt overran its timeout; `stack` shows where it was stuck."""
    job.lose_claim()
    exc = JobTimeout(f"{job.label} ran longer than its timeout of {job.timeout} s")
    stack = f"Stack of the job at its timeout:\n{stack}"
    _record(job, endings.failure_outcome(job, exc, stack), began, exc)


def kill(job: Job, began: float, stack: str) -> None:
    """Record that an operator killed this attempt (`kill_requested_at`): failed for good, the
    stack at that moment as its traceback. The caller then recycles its process."""
    job.lose_claim()
    exc = JobKilled(f"{job.label} was killed while running (it did not stop when asked)")
    stack = f"Stack of the job when it was killed:\n{stack}"
    _record(job, endings.killed_outcome(job, exc, stack), began, exc)


def hand_back(job: Job) -> bool:
    """Return an attempt this worker cannot finish (shutdown) to the queue, uncounted.

    A job someone asked to stop is not worth handing back: it ends cancelled. Either way the
    attempt is over, and a job that checks `cancellation_requested()` stops.
    """
    job.lose_claim()
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
        running, JobState.PENDING, guard=job._claim(), **_handed_back_changes(job)
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
    """Write how an attempt ended (if the row is still this attempt's) and report it, alone:
    what a timeout does, from the worker's main thread."""
    to_state, changes = outcome
    if job._log is not None:
        changes = {**changes, "log": job._log.text()}
    finished = Outcome(job, to_state, changes, _since(began), exc)
    settle([finished], record_each([finished], using=job._state.db or DEFAULT_DB_ALIAS))
    report(finished)


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
