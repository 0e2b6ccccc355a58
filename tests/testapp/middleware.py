"""Job middleware for the tests (`JOBS_MIDDLEWARE`): each notes what it saw in `SEEN`."""

import logging

from jobs.errors import Cancelled

SEEN: list[str] = []
BUILT: list[str] = []
logger = logging.getLogger(__name__)


class Outer:
    def __init__(self, perform_next):
        BUILT.append("Outer")
        self.perform_next = perform_next

    def __call__(self, job):
        SEEN.append(f"outer in {job.label_text}")
        try:
            self.perform_next(job)
        except Exception as exc:
            SEEN.append(f"outer saw {type(exc).__name__}")
            raise
        SEEN.append("outer out")


def inner(perform_next):
    """A function factory, as Django allows: returns a closure."""
    BUILT.append("inner")

    def step(job):
        SEEN.append("inner in")
        logger.info("inner middleware around %s", job.label_text)
        perform_next(job)
        SEEN.append("inner out")

    return step


def skip_maintenance(perform_next):
    """Skips jobs labelled "skip", snoozes "later", cancels "stop"."""

    def step(job):
        if job.label_text == "skip":
            return None
        if job.label_text == "later":
            job.snooze(60)
        if job.label_text == "stop":
            raise Cancelled
        return perform_next(job)

    return step


def swallow(perform_next):
    """Turns any failure into a success: the attempt is not retried."""

    def step(job):
        try:
            perform_next(job)
        except Exception as exc:
            SEEN.append(f"swallowed {exc}")

    return step


def raising_factory(perform_next):
    raise RuntimeError("no broker configured")


def not_callable(perform_next):
    return 42


def routing(perform_next):
    """Notes where the ORM would send a read or a write from inside the attempt."""
    from django.db import router, transaction

    from tests.testapp.models import Effect

    def step(job):
        SEEN.append(f"read Effect from {router.db_for_read(Effect)}")
        SEEN.append(f"read {type(job).__name__} from {router.db_for_read(type(job))}")
        SEEN.append(f"write Effect to {router.db_for_write(Effect)}")
        with transaction.atomic():
            SEEN.append(f"read Effect in a transaction from {router.db_for_read(Effect)}")
        perform_next(job)

    return step
