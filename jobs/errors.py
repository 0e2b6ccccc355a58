"""The framework's exceptions: each message says what happened and what to do next."""


class JobError(Exception):
    """Base class for every error this framework raises on purpose."""


class JobNotRunnable(JobError):
    """`run()` refused: the row is not new or pending (already running, or finished).

    This is the idempotency contract at work, not a failure: whoever got here second
    must not perform the job again.
    """


class JobStateError(JobError):
    """A lifecycle verb was used on a row in a state it does not apply to."""


class ConfigurationError(JobError):
    """The framework cannot run with the configuration it was given."""


class JobTimeout(JobError):
    """An attempt overran its job's `timeout`: recorded on the row, then retried or failed."""


class JobKilled(JobError):
    """An operator killed a running attempt that would not stop (the admin's "Kill"): recorded
    on the row as a failure that counts, with the job's stack, and its worker recycled."""


class Snooze(BaseException):
    """Raised by `Job.snooze()`: run this job again after `delay`, without counting an attempt.

    A BaseException, like SystemExit, so an `except Exception` in `perform()` lets it pass.
    """

    def __init__(self, delay) -> None:
        super().__init__(f"snoozed for {delay}")
        self.delay = delay


class Cancelled(BaseException):
    """Raise from `perform()` to stop after `cancellation_requested()` said so: the attempt
    ends `cancelled`, not failed, and is not retried.

    A BaseException, like `Snooze`, so an `except Exception` in `perform()` lets it pass.
    """


class DuplicateJob(JobError):
    """An enqueue (or requeue) would make a second active row with the same `unique_on` key.

    The database refused it (the model's partial unique constraint); the write was undone in
    its own savepoint, so the caller's transaction carries on. `existing` is the active job
    (pending or running) that holds the key, or None when the clash is between rows of one
    `bulk_enqueue()` or `requeue()` call.
    """

    def __init__(self, message: str, existing=None) -> None:
        super().__init__(message)
        self.existing = existing
