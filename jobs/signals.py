"""Django signals around a job's lifecycle, for integrations of your own.

Each is sent with the job model as `sender` and the row as `job` (its fields as of the
event); connect with `@receiver(job_failed, sender=Export)` or for every model. They are
sent by the process that made the change: `job_enqueued` by whoever enqueued (inside their
transaction, so it may still roll back: use `transaction.on_commit` in the receiver for
side effects), the others by the worker running the job, on the job's own thread.

- `job_enqueued(job)`: `enqueue()` and `bulk_enqueue()` (once per row).
- `job_started(job)`: an attempt was claimed and `perform()` is about to run.
- `job_succeeded(job, duration)`: `perform()` returned; `duration` in seconds.
- `job_retried(job, duration, exception)`: the attempt failed and will run again at
  `job.run_at`.
- `job_failed(job, duration, exception)`: the attempt failed and no attempt is left (or
  the error is one the model discards); `exception` is a `JobTimeout` for a timeout.
- `job_rescued(job)`: the row's worker stopped renewing its lease (killed, crashed,
  frozen); `job.state` says where it went: pending (retry), failed or cancelled.

A receiver that raises is logged (logger `jobs.signals`) and does not stop the job, the
other receivers, or the caller.
"""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

job_enqueued = Signal()
job_started = Signal()
job_succeeded = Signal()
job_retried = Signal()
job_failed = Signal()
job_rescued = Signal()


def send(signal: Signal, job, **kwargs) -> None:
    """Tell the receivers of `signal` about `job`; their mistakes are logged, not raised."""
    for receiver, result in signal.send_robust(type(job), job=job, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "signal receiver %s failed for %s",
                getattr(receiver, "__qualname__", receiver),
                job.label,
                exc_info=result,
            )
