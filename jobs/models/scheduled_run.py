"""`ScheduledRun`: one slot of one schedule that the clock enqueued (see `jobs.cron`)."""

from django.db import models


class ScheduledRun(models.Model):
    """One slot of one schedule that the clock enqueued.

    The unique constraint on (schedule, slot) is what makes each slot run once however many
    workers run the clock: each tries to insert the slot's row in the transaction that
    enqueues its job, and every one but the first fails on the constraint and rolls back.
    A lock would die with its holder; a constraint does not.
    """

    schedule = models.CharField(max_length=200)
    slot = models.DateTimeField(help_text="The time the schedule named.")
    enqueued_at = models.DateTimeField()
    late = models.BooleanField(
        default=False, help_text="Enqueued on catching up after the clock was down."
    )
    job_model = models.CharField(max_length=200)
    job_pk = models.CharField(max_length=64)

    class Meta:
        ordering = ("schedule", "-slot")
        constraints = (
            models.UniqueConstraint(fields=["schedule", "slot"], name="jobs_scheduledrun_once"),
        )

    def __str__(self) -> str:
        return f"{self.schedule} at {self.slot:%Y-%m-%d %H:%M:%S}"
