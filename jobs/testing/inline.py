"""Inline mode: every enqueued job runs in the enqueuing process once its transaction commits.

For tests of code that enqueues (a view, a service): the job's effects are there when the
code returns, with no worker. The job runs as a worker would run it, through `Job.run()`:
the row is locked and claimed, its outcome recorded on the row, an exception from
`perform()` recorded there rather than raised (unless `raise_errors`). Only what commits
runs: a job enqueued in a transaction that rolls back never does.

A receiver of `job_enqueued` (and of `request_finished`) does the work. It is connected
only while inline mode is on: while a `run_jobs_inline()` block is active, or while the
`JOBS_RUN_INLINE` setting is true (`JobsConfig.ready()` and Django's `setting_changed`, which
`override_settings` sends, call `follow_setting()`). A process that never turns inline mode
on never imports this module.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import request_finished
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from jobs import conf, signals, timesource
from jobs.errors import JobNotRunnable
from jobs.models import Dependency, Job
from jobs.states import RUNNABLE_STATES, JobState

TRACEBACK_SHOWN = 2_000
DISPATCH_UID = "jobs.testing.inline"
# `run_jobs_inline()` blocks open in any thread: the receivers stay connected while any is.
_open_blocks = 0
_open_lock = threading.Lock()


class InlineJobFailed(AssertionError):
    """Jobs run inline by a `run_jobs_inline(raise_errors=True)` block failed.

    An AssertionError, so a test runner reports it as the test's failure. Raised when the
    block ends, not from the enqueue: the job's outcome is recorded first, exactly as a
    worker would record it.
    """


@dataclass(eq=False)
class InlineRun:
    """What one `run_jobs_inline()` block asked for, and what it ran."""

    run_scheduled: bool = False
    raise_errors: bool = False
    ran: list[Job] = field(default_factory=list)
    # The jobs whose inline attempt raised (failed for good, or to be retried), with what.
    failures: list[tuple[Job, BaseException]] = field(default_factory=list)


_blocks: ContextVar[tuple[InlineRun, ...]] = ContextVar("jobs_inline_blocks", default=())


@contextmanager
def run_jobs_inline(
    *, run_scheduled: bool = False, raise_errors: bool = False
) -> Iterator[InlineRun]:
    """Run every job enqueued inside this block (or the decorated test) when it commits.

    Jobs scheduled for later (`run_at` still to come, as with `enqueue(delay=...)`) stay
    pending unless `run_scheduled`, as they would with a worker; `drain(now=...)` runs them
    once the test moves time on. A job that fails is recorded on the row as usual; with
    `raise_errors`, the block then ends with `InlineJobFailed` naming each failure. Jobs
    enqueued by a job running inline run too, after it, and so do the jobs waiting on it
    (`enqueue(after=...)`, a batch's `on_finish`) once it has released them. Yields an
    `InlineRun` whose `ran` lists the jobs run, with their outcomes.
    """
    block = InlineRun(run_scheduled=run_scheduled, raise_errors=raise_errors)
    token = _blocks.set((*_blocks.get(), block))
    _blocks_open(+1)
    try:
        yield block
        run_committed()
    finally:
        _blocks.reset(token)
        _blocks_open(-1)
    if raise_errors and block.failures:
        raise InlineJobFailed(_describe_failures(block.failures)) from block.failures[0][1]


def run_committed() -> None:
    """Run the inline jobs whose transaction has committed as far as the test lets it.

    Under a test wrapped in a transaction (pytest-django's `django_db`, Django's `TestCase`)
    the code's own `atomic()` block ends in a savepoint release, not a commit, so Django
    never runs its on-commit callbacks. Its inline jobs are run here instead, once no
    transaction but the test's own is open: at the end of each test-client request, at the
    next enqueue, when a `run_jobs_inline()` block ends, or when a test calls this.
    """
    for connection in connections.all(initialized_only=True):
        if not _outside_code_transactions(connection):
            continue
        due = [entry for entry in connection.run_on_commit if isinstance(entry[1], _OnCommit)]
        if due:
            connection.run_on_commit = [e for e in connection.run_on_commit if e not in due]
            for _, on_commit, _ in due:
                on_commit()


def follow_setting() -> None:
    """Listen for enqueues and request ends while inline mode is on (the setting, or an open
    `run_jobs_inline()` block in any thread), and not otherwise."""
    with _open_lock:
        on = conf.run_inline() or _open_blocks > 0
    if on:
        signals.job_enqueued.connect(_job_enqueued, dispatch_uid=DISPATCH_UID)
        request_finished.connect(_request_finished, dispatch_uid=DISPATCH_UID)
    else:
        signals.job_enqueued.disconnect(dispatch_uid=DISPATCH_UID)
        request_finished.disconnect(dispatch_uid=DISPATCH_UID)


def _blocks_open(change: int) -> None:
    global _open_blocks
    with _open_lock:
        _open_blocks += change
    follow_setting()


def _active_block() -> InlineRun | None:
    """The innermost `run_jobs_inline()` block, or the setting's defaults, or None."""
    if blocks := _blocks.get():
        return blocks[-1]
    return InlineRun() if conf.run_inline() else None


def _job_enqueued(sender: type[Job], job: Job, **kwargs: Any) -> None:
    block = _active_block()
    if block is None:
        return
    using = job._state.db
    run_committed()
    if _outside_code_transactions(connections[using]):
        _runner.submit(job, block)
    else:
        transaction.on_commit(_OnCommit(job, block), using=using)


def _request_finished(**kwargs: Any) -> None:
    if _active_block() is not None:
        run_committed()


def _outside_code_transactions(connection: BaseDatabaseWrapper) -> bool:
    """No transaction is open but a test's: a write now is as good as committed."""
    return all(block._from_testcase for block in connection.atomic_blocks)


@dataclass(eq=False)
class _OnCommit:
    """The on-commit callback of one inline job; a type of its own so `run_committed()`
    can tell it from the project's callbacks."""

    job: Job
    block: InlineRun

    def __call__(self) -> None:
        _runner.submit(self.job, self.block)


class _Runner(threading.local):
    """Runs submitted jobs one after the other, so a job enqueued by a job running inline
    waits for that job to finish rather than running in the middle of it."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[Job, InlineRun]] = deque()
        self.running = False

    def submit(self, job: Job, block: InlineRun) -> None:
        self.waiting.append((job, block))
        if self.running:
            return
        self.running = True
        try:
            while self.waiting:
                self._run(*self.waiting.popleft())
                run_committed()
        finally:
            self.running = False
            self.waiting.clear()

    def _run(self, enqueued: Job, block: InlineRun) -> None:
        """Run a fresh copy of the row, as a worker would load it: the caller's instance
        stays as it enqueued it (`refresh_from_db()` shows the outcome)."""
        job = type(enqueued)._base_manager.using(enqueued._state.db).filter(pk=enqueued.pk).first()
        if job is None or job.state not in RUNNABLE_STATES:
            return  # deleted, cancelled or already run by someone else
        if not block.run_scheduled and job.run_at is not None and job.run_at > timesource.now():
            return
        with _failures_of(job) as failures:
            try:
                job.run()
            except JobNotRunnable:
                return
        block.ran.append(job)
        block.failures.extend((job, exc) for exc in failures)
        if job.has_dependents:  # jobs waiting on it may be pending now: they run next
            self.waiting.extend((child, block) for child in _waiting_on(job))


_runner = _Runner()


def _waiting_on(parent: Job) -> list[Job]:
    """The jobs that wait on `parent` (`enqueue(after=...)`, its batch's `on_finish`)."""
    edges = Dependency.objects.using(parent._state.db).filter(
        parent_model=parent._meta.concrete_model._meta.label, parent_pk=str(parent.pk)
    )
    return [child for edge in edges if (child := edge.child()) is not None]


@contextmanager
def _failures_of(watched: Job) -> Iterator[list[BaseException]]:
    """Collect what `watched`'s attempt raises, from the signals that report it."""
    failures: list[BaseException] = []

    def note(sender: type[Job], job: Job, exception: BaseException, **kwargs: Any) -> None:
        if job.pk == watched.pk:
            failures.append(exception)

    reporting = (signals.job_retried, signals.job_failed)
    for signal in reporting:
        signal.connect(note, sender=type(watched), weak=False)
    try:
        yield failures
    finally:
        for signal in reporting:
            signal.disconnect(note, sender=type(watched))


def _describe_failures(failures: list[tuple[Job, BaseException]]) -> str:
    lines = [f"{len(failures)} job(s) run inline failed:"]
    for job, _ in failures:
        outcome = "failed" if job.state == JobState.FAILED else "will retry"
        lines.append(
            f"- {job.label} ({outcome}, attempt {job.attempts} of {job.max_attempts}): "
            f"{job.error_type}: {job.error_message}"
        )
        lines.append(job.error_traceback[-TRACEBACK_SHOWN:])
    return "\n".join(lines)
