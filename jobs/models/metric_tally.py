"""`MetricTally`: the deployment-wide totals behind the Prometheus counters."""

from django.db import models


class MetricTally(models.Model):
    """A running total behind one Prometheus counter or histogram series (`jobs.monitoring.tally`).

    Every process that runs jobs adds what it counted since its last flush to these rows
    (`value = value + n`), so the totals are right however many processes on however many
    hosts did the counting. Rows are never deleted: a counter must never go down.
    """

    name = models.CharField(max_length=100, help_text="The series, e.g. jobs_failed_total.")
    queue = models.CharField(max_length=100)
    model = models.CharField(max_length=200, help_text="The job model, app_label.ModelName.")
    bucket = models.CharField(
        max_length=20,
        blank=True,
        help_text="A histogram bucket's upper bound (observations in it alone, not cumulative).",
    )
    value = models.FloatField(default=0)

    class Meta:
        constraints = (
            models.UniqueConstraint(
                fields=["name", "queue", "model", "bucket"], name="jobs_metrictally_series"
            ),
        )

    def __str__(self) -> str:
        return f"{self.name}{{queue={self.queue}, model={self.model}, bucket={self.bucket}}}"
