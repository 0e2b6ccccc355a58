"""Run the pending jobs in the test's own process: the fast, deterministic way to test effects.

No worker, no subprocess, no thread: each runnable row is run through `Job.run()` (the row
lock, the claim, the outcome on the row, as a worker records it), until no row is runnable.
The order is one a test can predict: highest priority, then earliest `run_at`, across job
models. A worker orders differently (queues by precedence, job models in turn within a queue,
several rows a claim), so a test should not depend on a worker running jobs in drain's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from jobs import timesource
from jobs.errors import JobNotRunnable
from jobs.models import Job
from jobs.models.discovery import served_models

# A drain without max_jobs stops with an error after this many runs: a job that keeps
# enqueueing itself (or snoozing, with `now` far ahead) would otherwise never let it end.
RUNAWAY_LIMIT = 10_000


class DrainLimitReached(AssertionError):
    """`drain()` ran `RUNAWAY_LIMIT` jobs and more were still runnable."""


def drain(
    models: Iterable[type[Job]] | None = None,
    queues: Sequence[str] | None = None,
    max_jobs: int | None = None,
    now: datetime | None = None,
) -> list[Job]:
    """Run runnable jobs one at a time, in this thread, until none is left; return them.

    Runnable means pending with `run_at` at or before `now` (default: the clock's now, read
    before each pick), so a retry backing off or a job enqueued with a delay waits unless
    `now` is moved past it. Jobs that the drained jobs enqueue are drained too. The next job
    is the highest `priority`, then the earliest `run_at`, across every model a worker
    serves (or `models`), of every queue (or `queues`); ties go by model label, then id.
    `max_jobs` stops after that many runs. Each returned job carries its outcome (`state`,
    `attempts`, `error_type`, ...), in the order they ran.

    A row that `run()` refuses (another thread took it, or its key is at its concurrency or
    rate limit, as `run()` keeps them) is passed over and left as it is.
    """
    models = list(models) if models is not None else served_models()
    ran: list[Job] = []
    passed: set[tuple[type[Job], int]] = set()
    while max_jobs is None or len(ran) < max_jobs:
        job = _next_runnable(models, queues, now or timesource.now(), passed)
        if job is None:
            break
        if max_jobs is None and len(ran) >= RUNAWAY_LIMIT:
            raise DrainLimitReached(
                f"drain() ran {RUNAWAY_LIMIT} jobs and {job.label} is still runnable: does "
                "a job enqueue itself again, or snooze with `now` set far ahead? Pass max_jobs."
            )
        try:
            ran.append(job.run())
        except JobNotRunnable:
            passed.add((type(job), job.pk))  # taken since we looked, or held by a limit
    return ran


def _next_runnable(
    models: list[type[Job]],
    queues: Sequence[str] | None,
    now: datetime,
    passed: set[tuple[type[Job], int]],
) -> Job | None:
    candidates = []
    for model in models:
        rows = model.objects.runnable(now)
        if queues is not None:
            rows = rows.filter(queue__in=queues)
        if skipped := [pk for passed_model, pk in passed if passed_model is model]:
            rows = rows.exclude(pk__in=skipped)
        if (job := rows.order_by("-priority", "run_at", "pk").first()) is not None:
            candidates.append(job)
    return min(
        candidates,
        key=lambda job: (-job.priority, job.run_at, job._meta.label, job.pk),
        default=None,
    )
