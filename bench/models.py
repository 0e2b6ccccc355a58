"""The job the benchmark moves: no work of its own, so what is measured is the framework."""

from typing import ClassVar

from jobs.models import Job


class NoopJob(Job):
    # W4 keeps a million finished rows on purpose.
    retention: ClassVar[dict[str, float | None]] = {"succeeded": None}

    def perform(self) -> None:
        """Nothing: every microsecond a run takes is the framework's and the database's."""
