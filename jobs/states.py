"""The states a job row moves through, and which moves are allowed.

Kept apart from the models so the database backends can name states without importing the
models (which import the backends to wake workers).
"""

from django.db import models


class JobState(models.TextChoices):
    NEW = "new"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# For each state, the states a row may enter it from. `_transition` refuses anything else,
# so no code path (admin, shell, worker) can make an impossible move.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    JobState.PENDING: frozenset(
        {JobState.NEW, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset({JobState.NEW, JobState.PENDING}),
    JobState.SUCCEEDED: frozenset({JobState.RUNNING}),
    JobState.FAILED: frozenset({JobState.RUNNING}),
    # From running only when the job itself stops on a cancel request (or its worker dies
    # after one): an operator's cancel of a running job is a request, not a move.
    JobState.CANCELLED: frozenset({JobState.NEW, JobState.PENDING, JobState.RUNNING}),
}

RUNNABLE_STATES = frozenset({JobState.NEW, JobState.PENDING})
REQUEUEABLE_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})
CANCELLABLE_STATES = frozenset({JobState.NEW, JobState.PENDING})
FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
