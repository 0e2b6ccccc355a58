"""The jobs the benchmark moves: no work of their own, so what is measured is the framework.

`NoopJob` is what every workload but W7 moves. W7 (concurrency limits) compares
`LimitedNoopJob` (at most 2 running per account) with `KeyedNoopJob`, the same columns
without the limit. A worker serves only the bench models its settings name in
`BENCH_MODELS` (default: `NoopJob` alone; `bench.settings` reads it from the environment,
which `bench.workers` sets per configuration), so W7's models add no table to the other
workloads' claims and each W7 worker serves one model, as W2's "one model" worker does.
"""

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from bench.stamps import stamp
from jobs.models import Job

KEYS = 100  # accounts W7 spreads its rows over


class BenchJob(Job):
    """A job that does nothing but stamp its start (when BENCH_STAMPS is set)."""

    # W4 keeps a million finished rows on purpose.
    retention: ClassVar[dict[str, float | None]] = {"succeeded": None}

    class Meta:
        abstract = True

    @classmethod
    def in_use(cls) -> bool:
        """Only where the worker's settings name it: each configuration serves what it says."""
        return cls._meta.label in getattr(settings, "BENCH_MODELS", ("bench.NoopJob",))

    @classmethod
    def values(cls, number: int) -> dict[str, Any]:
        """The fields of the `number`th row a workload queues: none of its own here."""
        return {}

    def perform(self) -> None:
        """Only the start stamp the latency workloads read: the rest is framework."""
        stamp(self.pk)


class NoopJob(BenchJob):
    pass


class KeyedJob(BenchJob):
    """A row per account, the accounts taken in turn, so every claim sees many keys."""

    account = models.IntegerField()

    class Meta:
        abstract = True

    @classmethod
    def values(cls, number: int) -> dict[str, Any]:
        return {"account": number % KEYS}


class LimitedNoopJob(KeyedJob):
    """At most 2 running per account: the claim takes the limited path (`jobs.db.limits`)."""

    concurrency_key = "account"
    concurrency_limit = 2


class KeyedNoopJob(KeyedJob):
    """`LimitedNoopJob`'s columns, its slot included, without the limit: W7's baseline."""

    concurrency_slot = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Which of its key's concurrency_limit slots the running row holds.",
    )
