"""`QueuePause`: a queue (or one job model in it) that workers stop claiming from."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models, transaction

from jobs import timesource
from jobs.db.wakeup import pauses_changed, wake_workers_on_commit
from jobs.validation import validate_queue_name


def _queue_name(value: str) -> None:
    try:
        validate_queue_name(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class QueuePauseManager(models.Manager):
    def pause(
        self, queue: str, *, model: str = "", reason: str = "", paused_by: str = ""
    ) -> tuple[QueuePause, bool]:
        """Pause `queue` (only `model`'s rows in it, given its label), or update the reason
        and author of the pause already there; (the pause, whether it is new).

        Workers hear of it on commit (PostgreSQL) or within a second (every database).
        """
        validate_queue_name(queue)
        with transaction.atomic(using=self.db):
            pause, created = self.update_or_create(
                queue=queue,
                model=model,
                defaults={"reason": reason, "paused_by": paused_by},
                create_defaults={
                    "reason": reason,
                    "paused_by": paused_by,
                    "paused_at": timesource.now(),
                },
            )
            pause.announce()
        return pause, created

    def resume(self, queue: str, *, model: str = "") -> bool:
        """End the pause of `queue` (of `model` in it); whether there was one. Workers hear
        of it on commit, and claim the queue's waiting rows at once."""
        with transaction.atomic(using=self.db):
            deleted, _ = self.filter(queue=queue, model=model).delete()
            if deleted:
                QueuePause(queue=queue).announce(using=self.db)
        return bool(deleted)


class QueuePause(models.Model):
    """A paused queue: while this row exists no worker on any host claims the queue's rows
    (of `model` only, when it names one). It is a row, not a worker's memory, so it
    survives restarts and deploys.

    Workers read the pauses at most once a second (`jobs.runtime.claims`) and at once when
    a wake-up says they changed (`jobs.db.wakeup.pauses_changed`), so a pause takes effect
    within a second. Jobs already running finish; pending ones stay pending with no
    attempt counted and their place in line kept. Deleting the row resumes the queue.
    Create and delete rows through `pause()`/`resume()` or the admin, which send that
    wake-up; a row written by raw SQL takes effect within a second all the same.
    """

    queue = models.CharField(max_length=100, validators=[_queue_name])
    model = models.CharField(
        max_length=200,
        blank=True,
        help_text="The job model (app_label.ModelName) paused in this queue; empty: every one.",
    )
    reason = models.CharField(max_length=500, blank=True)
    paused_by = models.CharField(
        max_length=150, blank=True, help_text="Who paused it: the admin user's name."
    )
    paused_at = models.DateTimeField(default=timesource.now)

    objects = QueuePauseManager()

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["queue", "model"], name="jobs_queuepause_queue_model"),
        )
        ordering = ("queue", "model")

    def __str__(self) -> str:
        return f"{self.queue} ({self.model})" if self.model else self.queue

    def announce(self, using: str | None = None) -> None:
        """Tell every worker, once the current transaction commits, that this queue's
        pauses changed, so they read them at once (PostgreSQL; elsewhere within a second).
        Call it after saving or deleting a row by other means than `pause()`/`resume()`."""
        wake_workers_on_commit(using or self._state.db or "default", [pauses_changed(self.queue)])
