"""The job the benchmark moves: no work of its own, so what is measured is the framework."""

from jobs.models import Job


class NoopJob(Job):
    retention = {"succeeded": None}  # W4 keeps a million finished rows on purpose

    def perform(self) -> None:
        """Nothing: every microsecond a run takes is the framework's and the database's."""
