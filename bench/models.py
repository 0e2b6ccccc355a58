"""The job the benchmark moves: no work of its own, so what is measured is the framework."""

from typing import ClassVar

from bench.stamps import stamp
from jobs.models import Job


class NoopJob(Job):
    # W4 keeps a million finished rows on purpose.
    retention: ClassVar[dict[str, float | None]] = {"succeeded": None}

    def perform(self) -> None:
        """Only the start stamp W3 reads (when BENCH_STAMPS is set): the rest is framework."""
        stamp(self.pk)
