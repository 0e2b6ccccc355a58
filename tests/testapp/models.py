"""Job models for the tests: each performance leaves a row in Effect, so tests can count."""

import json
import os
import signal
import threading
import time
import uuid
from datetime import timedelta

from django.db import models, transaction

from jobs.errors import Cancelled, JobTimeout
from jobs.models import Batch, IterativeJob, Job


class Effect(models.Model):
    """One row per perform() call: how tests prove "exactly once"."""

    job_model = models.CharField(max_length=100)
    job_id = models.BigIntegerField()
    attempt = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=255)

    def __str__(self) -> str:
        return f"{self.job_model}#{self.job_id} attempt {self.attempt}"

    @classmethod
    def record(cls, job: Job) -> "Effect":
        return cls.objects.create(
            job_model=job._meta.label, job_id=job.pk, attempt=job.attempts, worker=job.claimed_by
        )


class Boom(Exception):
    """What a RecordingJob with fail=True raises."""


# What "hoard" jobs keep, for the life of the worker process: a leak to find. Above glibc's
# largest mmap threshold (32 MB), so each is fresh memory from the kernel, never a reuse of
# heap pages freed earlier (which the process's peak already counts).
HOARD: list[bytearray] = []
HOARDED_MB = 40


class RecordingJob(Job):
    label_text = models.CharField(max_length=50, blank=True)
    sleep_seconds = models.FloatField(default=0)
    fail = models.BooleanField(default=False)
    kill_worker = models.BooleanField(default=False, help_text="SIGKILL the process running it.")
    behaviour = models.CharField(
        max_length=20,
        blank=True,
        choices=[
            ("exit", "call sys.exit()"),
            ("interrupt", "raise KeyboardInterrupt"),
            ("out_of_memory", "raise MemoryError"),
            ("chain", "enqueue two follow-up jobs in a transaction of its own"),
            ("delete_itself", "delete its own row, as an operator might"),
            ("snooze", "ask to run again in 30 s, from inside an `except Exception`"),
            ("forbidden", "raise PermissionError, which discard_on fails at once"),
            ("value_error", "raise ValueError, which retry_on does not retry"),
            ("hold_own_row", "sleep inside its own transaction, holding its row's lock"),
            ("hoard", "keep 40 MB for the life of its process, as a leak does"),
        ],
    )

    max_attempts = 1
    retry_on = (Boom, ConnectionError, JobTimeout)
    discard_on = (PermissionError,)

    def perform(self) -> None:
        Effect.record(self)
        if self.kill_worker:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.behaviour == "hold_own_row":
            with transaction.atomic():
                self.set_progress(1, 1)  # writes its row: locked until this block ends
                time.sleep(self.sleep_seconds)
            return
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        if self.behaviour:
            getattr(self, f"_{self.behaviour}")()
        if self.fail:
            raise Boom(f"boom in {self.label_text or self.pk}")

    def _hoard(self) -> None:
        HOARD.append(bytearray(HOARDED_MB * 1024 * 1024))  # written: resident, not reserved

    def _exit(self) -> None:
        raise SystemExit(3)

    def _interrupt(self) -> None:
        raise KeyboardInterrupt

    def _out_of_memory(self) -> None:
        raise MemoryError("simulated")

    def _chain(self) -> None:
        with transaction.atomic():
            for _ in range(2):
                RecordingJob.objects.create(label_text=f"child of {self.pk}").enqueue()

    def _delete_itself(self) -> None:
        RecordingJob.objects.filter(pk=self.pk).delete()

    def _snooze(self) -> None:
        try:
            self.snooze(30)
        except Exception:  # a broad handler in perform() must not swallow a snooze
            raise AssertionError("snooze was caught as an Exception") from None

    def _forbidden(self) -> None:
        raise PermissionError("not allowed")

    def _value_error(self) -> None:
        raise ValueError("bad value")


class PhasedJob(Job):
    """Runs in `first_phase()` until its row says `go`, then in `second_phase()` until it is
    cancelled: a running job whose stack changes on cue (the stack tests). A `stubborn` one
    ignores cancel requests in its first phase (the kill tests)."""

    go = models.BooleanField(default=False)
    secret = models.CharField(max_length=50, blank=True)
    stubborn = models.BooleanField(default=False, help_text="Ignore cancel requests.")

    sensitive_fields = ("secret",)

    def perform(self) -> None:
        self.first_phase(self.secret)
        self.second_phase()

    def first_phase(self, token: str) -> None:  # the token shows in the stack: masked
        while not PhasedJob.objects.filter(pk=self.pk, go=True).exists():
            if self.cancellation_requested() and not self.stubborn:
                raise Cancelled
            time.sleep(0.05)

    def second_phase(self) -> None:
        while not self.cancellation_requested():
            time.sleep(0.05)
        raise Cancelled


class BatchReport(Job):
    """A batch's `on_finish` job: records what its batch tells it (counts and members)."""

    seen = models.CharField(max_length=200, blank=True)

    def perform(self) -> None:
        finished = Batch.objects.finished_by(self)
        Effect.record(self)
        seen = f"{finished.succeeded}/{finished.failed}/{finished.cancelled}"
        seen += f" of {finished.total}, {len(finished.members())} members"
        BatchReport.objects.filter(pk=self.pk).update(seen=seen)


class HugeErrorJob(RecordingJob):
    """Fails with an error far larger than the row keeps."""

    class Meta:
        proxy = True

    def perform(self) -> None:
        raise ValueError("x" * 40_000)


class UrgentJob(Job):
    """A second job model with its own default queue and priority."""

    note = models.CharField(max_length=50, blank=True)

    queue = "urgent"
    priority = 10

    def perform(self) -> None:
        Effect.objects.create(
            job_model=self._meta.label,
            job_id=self.pk,
            attempt=self.attempts,
            worker=self.claimed_by,
        )


class StepJob(Job):
    """Works through `steps` steps, reporting progress and logging each, as long jobs do.

    It holds a secret (an API token) that must never show in the admin, its log or its
    errors; it stops at a cancel request; it fails at step `fail_at` if set. With
    `step_seconds`, each step waits, so a test can act while it runs.
    """

    steps = models.PositiveIntegerField(default=3)
    step_seconds = models.FloatField(default=0)
    fail_at = models.PositiveIntegerField(null=True, blank=True)
    api_token = models.CharField(max_length=100, blank=True)

    sensitive_fields = ("api_token",)
    max_attempts = 1

    def perform(self) -> None:
        for step in range(1, self.steps + 1):
            if self.cancellation_requested():
                self.logger.info("stopping before step %d: cancelled", step)
                raise Cancelled
            self.logger.info("step %d of %d with token %s", step, self.steps, self.api_token)
            if step == self.fail_at:
                raise ValueError(f"step {step} refused token {self.api_token}")
            time.sleep(self.step_seconds)
            self.set_progress(step, self.steps)


EXECUTION_LOG = "TESTS_EXECUTION_LOG"


class TimedJob(Job):
    """Sleeps `seconds`, writing when each execution starts and ends to a local file.

    For workers on several hosts (`tests/integration/test_hosts.py`): a host may be cut off
    from the database while the job runs, so the record cannot be a row. Each execution
    appends two JSON lines (start, end) to the file named by `TESTS_EXECUTION_LOG`, on the
    monotonic clock, which every process of the machine shares and which a host's faked wall
    clock leaves alone; the wall clock is written too, to show the offset. It waits on an
    Event, not `time.sleep()`: under libfaketime with the monotonic clock left alone
    (`tests/hosts.py`), `time.sleep()` fails with EINVAL.
    """

    seconds = models.FloatField(default=0)

    max_attempts = 5

    def perform(self) -> None:
        path = os.environ.get(EXECUTION_LOG)
        if not path:
            raise RuntimeError(
                f"TimedJob records each execution in the file named by {EXECUTION_LOG}; set it"
            )
        execution = {
            "execution": uuid.uuid4().hex,
            "job": self.pk,
            "attempt": self.attempts,
            "worker": self.claimed_by,
            "host": os.environ.get("TESTS_HOST", ""),
        }
        _append_line(path, {**execution, "event": "start", **_clocks()})
        threading.Event().wait(self.seconds)
        _append_line(path, {**execution, "event": "end", **_clocks()})


def _clocks() -> dict[str, float]:
    return {"monotonic": time.monotonic(), "wall": time.time()}


def _append_line(path: str, record: dict) -> None:
    """One write() of one line with O_APPEND: lines of concurrent writers never interleave."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (json.dumps(record) + "\n").encode())
    finally:
        os.close(descriptor)


class UniqueJob(Job):
    """At most one active (pending or running) row per (account, report): `unique_on`.

    Declared as docs/flow-control.md shows, with a plain CharField for the account so the
    tests need no other table. `fail` makes perform() raise, for a failed row to requeue.
    """

    account = models.CharField(max_length=50)
    report = models.CharField(max_length=40, blank=True)
    sleep_seconds = models.FloatField(default=0)
    fail = models.BooleanField(default=False)

    unique_on = ("account", "report")
    max_attempts = 1

    def perform(self) -> None:
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        Effect.record(self)
        if self.fail:
            raise Boom(f"{self.label} was told to fail")


class Span(models.Model):
    """When one attempt of a limited job ran, as its own process saw it: how the tests check
    that no more than the limit ran at any instant, in what order, and how often they started.
    """

    job_model = models.CharField(max_length=100)
    job_id = models.BigIntegerField()
    key = models.CharField(max_length=50, null=True)  # noqa: DJ001 (the job's key, maybe NULL)
    slot = models.SmallIntegerField(null=True)
    worker = models.CharField(max_length=255)
    began = models.FloatField()  # time.time() at the first line of perform()
    ended = models.FloatField(null=True)  # ... at its last

    def __str__(self) -> str:
        return f"{self.job_model}#{self.job_id} {self.began:.3f}-{self.ended or 0:.3f}"


class SpanJob(Job):
    """The limited jobs' shape: an account as the key, and perform() records a Span around a
    sleep of `sleep_seconds`."""

    account = models.CharField(max_length=50, null=True, blank=True)  # noqa: DJ001 (NULL: no limit)
    sleep_seconds = models.FloatField(default=0)

    max_attempts = 1

    class Meta:
        abstract = True

    def perform(self) -> None:
        span = Span.objects.create(
            job_model=self._meta.label,
            job_id=self.pk,
            key=self.account,
            slot=getattr(self, "concurrency_slot", None),
            worker=self.claimed_by,
            began=time.time(),
        )
        time.sleep(self.sleep_seconds)
        span.ended = time.time()
        span.save(update_fields=["ended"])


class LimitedJob(SpanJob):
    """At most two running per account: `concurrency_key` and `concurrency_limit`."""

    concurrency_key = "account"
    concurrency_limit = 2


class OrderedJob(SpanJob):
    """One at a time per account, in enqueue order: a concurrency limit of 1."""

    concurrency_key = "account"
    concurrency_limit = 1


class RatedJob(SpanJob):
    """At most five starts a second per account: `rate_limit`."""

    concurrency_key = "account"
    rate_limit = (5, timedelta(seconds=1))


class IterationItem(models.Model):
    """One row per each() call of a CountingIteration: how tests count exactly which items
    ran, how often, and in which attempt."""

    job_id = models.BigIntegerField()
    item = models.IntegerField()
    attempt = models.PositiveSmallIntegerField()
    worker = models.CharField(max_length=255)

    def __str__(self) -> str:
        return f"CountingIteration#{self.job_id} item {self.item}"


class CountingIteration(IterativeJob):
    """Iterates over range(count); the cursor is the last number done.

    `each()` records an IterationItem, then sleeps `item_seconds`; it raises Boom at item
    `fail_at`; `throttle()` asks to wait `throttle_seconds` once `pause_after` items are done.
    """

    count = models.PositiveIntegerField(default=10)
    cursor = models.BigIntegerField(null=True, blank=True)
    item_seconds = models.FloatField(default=0)
    fail_at = models.IntegerField(null=True, blank=True)
    pause_after = models.PositiveIntegerField(null=True, blank=True)
    throttle_seconds = models.FloatField(default=30)

    max_attempts = 1

    def items(self, cursor: int | None):
        start = 0 if cursor is None else cursor + 1
        return ((number, number) for number in range(start, self.count))

    def each(self, number: int) -> None:
        if number == self.fail_at:
            raise Boom(f"item {number} failed")
        IterationItem.objects.create(
            job_id=self.pk, item=number, attempt=self.attempts, worker=self.claimed_by
        )
        if self.item_seconds:
            time.sleep(self.item_seconds)

    def total(self) -> int:
        return self.count

    def throttle(self) -> float | None:
        if self.pause_after is not None and self.items_done == self.pause_after:
            return self.throttle_seconds
        return None
