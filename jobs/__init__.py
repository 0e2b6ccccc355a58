"""Background jobs that are Django models: enqueue in your transaction, run under a row lock.

The public API, and where each name is imported from (nothing else is promised to stay put;
moves are listed in CHANGELOG.md):

- `jobs`: `batch` (`from jobs import batch`), jobs enqueued together with a job to run once
  all have ended (`jobs.models.batch`).
- `jobs.models`: `Job` (subclass it), `IterativeJob` (for work in resumable items),
  `JobState`, `JobQuerySet`, `QueuePause`; the framework's rows
  `Worker`, `LatencyProbe`, `ScheduledRun`, `MetricTally`, `Batch`, `Dependency`.
- `jobs.admin`: `JobAdmin`, to register a job model's admin.
- `jobs.errors`: `JobError` and its kinds (`JobNotRunnable`, `JobStateError`, `JobTimeout`,
  `DuplicateJob`, `Cancelled`, `ConfigurationError`, ...).
- `jobs.signals`: the lifecycle signals (`job_enqueued`, `job_started`, `job_succeeded`,
  `job_retried`, `job_failed`, `job_rescued`).
- `jobs.views.status`: `accepted()`, `Expectation`, for views that start jobs (202/303);
  `jobs.urls` for the status, health and metrics endpoints.
- `jobs.testing`: helpers for a project's tests (inline mode, `drain()`, assertions,
  fixtures, `jobs.testing.factories`).
- `jobs.contrib.tasks`: Django's Tasks API backend, an app of its own
  (`jobs.contrib.tasks.backend.DatabaseBackend`); `jobs.contrib.replica`: a job middleware
  and router sending jobs' reads to a replica.
- The commands `runjobs`, `prunejobs` and `jobs`.

This module imports nothing when it is imported, so any module of the package may import
from `jobs` without pulling in the rest; `jobs.batch` is loaded when first asked for.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "batch":
        from jobs.models.batch import batch

        return batch
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")
