"""Helpers for the tests of projects that use jobs: see docs/testing.md.

- `run_jobs_inline()` (or the `JOBS_RUN_INLINE` setting): enqueued jobs run on commit,
  in the test's process.
- `drain()`: run the pending jobs now, in the test's process, and see their outcomes.
- `assert_enqueued()`, `assert_not_enqueued()`, `captured_jobs()`: what was enqueued.
- `jobs.testing.pytest_plugin`: the same as pytest fixtures.
- `jobs.testing.factories.JobFactory`: a factory-boy base for job models (needs factory_boy).
"""

from jobs.testing.assertions import assert_enqueued, assert_not_enqueued, captured_jobs
from jobs.testing.draining import DrainLimitReached, drain
from jobs.testing.inline import InlineJobFailed, InlineRun, run_committed, run_jobs_inline

__all__ = [
    "DrainLimitReached",
    "InlineJobFailed",
    "InlineRun",
    "assert_enqueued",
    "assert_not_enqueued",
    "captured_jobs",
    "drain",
    "run_committed",
    "run_jobs_inline",
]
