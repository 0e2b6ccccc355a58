"""The states a job row moves through, and which moves are allowed.

Kept apart from the models so the database engines and the attempt protocol, which the
models build on, can name states and check a move without importing the models.
"""

from django.db import models

from jobs.errors import JobStateError


class JobState(models.TextChoices):
    NEW = "new"
    WAITING = "waiting"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# For each state, the states a row may enter it from. `check_transition` refuses anything else,
# so no code path (admin, shell, worker) can make an impossible move.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    # Waiting for other jobs to end (`enqueue(after=...)`, a batch's `on_finish`): no claim sees
    # it. A cancelled child comes back to waiting when the parent that cancelled it is requeued,
    # and a requeued one (pending, in the requeue's transaction) while a parent has not succeeded.
    JobState.WAITING: frozenset({JobState.NEW, JobState.CANCELLED, JobState.PENDING}),
    JobState.PENDING: frozenset(
        {JobState.NEW, JobState.WAITING, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset({JobState.NEW, JobState.PENDING}),
    JobState.SUCCEEDED: frozenset({JobState.RUNNING}),
    JobState.FAILED: frozenset({JobState.RUNNING}),
    # From running only when the job itself stops on a cancel request (or its worker dies
    # after one): an operator's cancel of a running job is a request, not a move.
    JobState.CANCELLED: frozenset(
        {JobState.NEW, JobState.WAITING, JobState.PENDING, JobState.RUNNING}
    ),
}

RUNNABLE_STATES = frozenset({JobState.NEW, JobState.PENDING})
REQUEUEABLE_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})
CANCELLABLE_STATES = frozenset({JobState.NEW, JobState.WAITING, JobState.PENDING})
# Rows not started yet, whose queue and priority `move()` may change.
MOVABLE_STATES = frozenset({JobState.WAITING, JobState.PENDING})
FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def check_transition(from_states: frozenset[str], to_state: str) -> None:
    """Refuse a move `ALLOWED_FROM` does not list: the guard every state change passes."""
    if not from_states <= ALLOWED_FROM[to_state]:
        raise JobStateError(f"no transition to {to_state} from {sorted(from_states)}")
