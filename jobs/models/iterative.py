"""`IterativeJob`: a long job as a sequence of items, resumable from a cursor on its own row.

The checkpoint is a typed column of the job (`cursor` by default, `cursor_field` renames it),
so the admin and a query show how far an iteration got, and it is written like every other
write of an attempt: an UPDATE fenced on the claim (state running, attempt number and
claimant), so an attempt that lost its row can never move a newer attempt's cursor back.

What holds, and how it fails:

- The cursor names the last item whose `each()` returned. It is saved at most every
  `cursor_save_interval` seconds, and always before the attempt stops or fails, so a crash
  (SIGKILL, a lost host) redoes at most the items of one interval plus the one in progress:
  `each()` runs at least once per item, never exactly once.
- Between items the iteration stops when its worker shuts down, its claim is lost, it has run
  `max_iteration_seconds`, `throttle()` asks for a pause, or someone cancels it. All but the
  cancel hand the row back to pending with no attempt counted (`Job.snooze()`), so any worker
  resumes it from the saved cursor; a cancel ends it `cancelled`. A save that finds the row no
  longer this attempt's means the claim is lost, and the iteration stops there.
- An exception from `each()` fails the attempt like any job's (`retry_on`, `max_attempts`);
  the cursor of the items before it is kept, so a retry, or a `requeue()`, resumes after them.
  To start over, set the cursor to None before requeueing.

Read docs/workflows.md ("Iteration") for the comparison with job-iteration and Sidekiq.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, ClassVar, NoReturn

from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError, models

from jobs.errors import Cancelled
from jobs.models.job import Job
from jobs.states import JobState

logger = logging.getLogger(__name__)


class IterativeJob(Job):
    """A job that works through `items(cursor)`, calling `each(item)` for one at a time.

    Define the checkpoint column yourself (`cursor = models.BigIntegerField(null=True)`, or
    any field whose values `items()` yields as cursors), `items()` and `each()`; optionally
    `total()` for the progress bar and `throttle()` to pause between items. Do not define
    `perform()`: the framework's drives the loop. `each()` may run again for an item after a
    crash, so make it idempotent; it should not `save()` the job row (a plain save writes the
    cursor unfenced).
    """

    items_done = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="Items whose each() returned, over every attempt, as of the saved cursor.",
    )

    # The checkpoint: the name of this model's own field that holds the cursor.
    cursor_field: ClassVar[str] = "cursor"
    # Seconds between two saves of the cursor: what a crash may redo, against one UPDATE per
    # save. A quarter of a second is a few writes a second however fast the items are.
    cursor_save_interval: ClassVar[float] = 0.25
    # Stop and hand the row back after this many seconds of one attempt (None: no limit), so
    # a very long iteration lets other work, and a new deploy's code, have the thread.
    max_iteration_seconds: ClassVar[float | None] = None

    # While an attempt runs: when (monotonic) and at what count the cursor was last saved.
    _cursor_saved_at = 0.0
    _saved_done: int | None = None

    class Meta:
        abstract = True

    def items(self, cursor: Any) -> Iterable[tuple[Any, Any]]:
        """The work after `cursor` (None the first time), as `(cursor, item)` pairs in order.

        Each pair's cursor must be what `items()` takes to resume after that item, and a
        value the cursor field stores. Called once per attempt; an iterator over a query
        (`.iterator()`) is closed when the attempt stops early.
        """
        raise NotImplementedError(f"{type(self).__name__} must define items(cursor)")

    def each(self, item: Any) -> None:
        """Do the work for one item. May run again for the same item after a crash."""
        raise NotImplementedError(f"{type(self).__name__} must define each(item)")

    def total(self) -> int | None:
        """How many items the whole iteration has (every attempt's), for the progress bar;
        None if unknown. Called once per attempt, so it may count with a query."""
        return None

    def throttle(self) -> timedelta | float | None:
        """A delay to wait before the next item, or None (or zero) to go on.

        Called before every item, so keep it cheap (read a replica's lag or the database's
        load at most every few seconds). A delay saves the cursor and hands the row back to
        run again after it, uncounted, instead of sleeping in a worker's thread.
        """
        return None

    @property
    def cursor_value(self) -> Any:
        """The cursor as this instance has it: the last item done by this attempt, or the
        saved checkpoint before the attempt started."""
        return getattr(self, self.cursor_field)

    def perform(self) -> None:
        """Resume from the saved cursor and call `each()` per item until none are left or a
        reason to stop comes up between items (see the module docstring)."""
        self.refresh_from_db(fields=[self.cursor_field, "items_done"])
        began = self._cursor_saved_at = time.monotonic()
        self._saved_done = self.items_done
        total = self.total()
        self._report_progress(total)
        items = iter(self.items(self.cursor_value))
        try:
            while True:
                self._stop_if_asked(began)
                try:
                    cursor, item = next(items)
                except StopIteration:
                    break
                self.each(item)
                setattr(self, self.cursor_field, cursor)
                self.items_done += 1
                if time.monotonic() - self._cursor_saved_at >= self.cursor_save_interval:
                    self._save_cursor()
                self._report_progress(total)
        except BaseException:
            # A stop (Snooze, Cancelled) or a failure: keep the items done so far.
            self._save_cursor_keeping_the_error()
            raise
        else:
            self._save_cursor()
        finally:
            _close(items)

    def _save_cursor_keeping_the_error(self) -> None:
        """Save the cursor while an exception is on its way out; if the database refuses
        (the error may be its outage), the row keeps its last cursor and the original error
        is the one recorded."""
        try:
            self._save_cursor()
        except DatabaseError:
            logger.warning("%s: could not save its cursor", self.label, exc_info=True)

    def _stop_if_asked(self, began: float) -> None:
        """Between two items: stop if there is a reason to, raising `Snooze` (hand back) or
        `Cancelled`. The worker's shutdown and a lost claim come first: they cost no query."""
        if self.shutdown_requested():
            self._hand_back("its worker is shutting down")
        if self._claim_lost:
            self._hand_back("its claim was lost")
        limit = self.max_iteration_seconds
        if limit is not None and time.monotonic() - began >= limit:
            self._hand_back(f"it ran max_iteration_seconds ({limit:g} s)")
        if self.cancellation_requested():
            logger.info("%s stopped at cursor %r: cancelled", self.label, self.cursor_value)
            raise Cancelled
        delay = self.throttle()
        if delay is not None and _seconds(delay) > 0:
            self._hand_back(f"throttle() asked to wait {_seconds(delay):g} s", delay)

    def _hand_back(self, why: str, delay: timedelta | float = 0) -> NoReturn:
        """Give the row back to run again after `delay`, uncounted (the cursor is saved on
        the way out of `perform()`)."""
        logger.info("%s paused at cursor %r: %s", self.label, self.cursor_value, why)
        self.snooze(delay)

    def _save_cursor(self) -> None:
        """Write the cursor and `items_done`, only while this attempt holds the row (as
        `set_progress()` writes). Nothing new since the last save, nothing written; a write
        that finds the row moved on (rescued, handed back) loses the claim, so the loop stops
        at the next item instead of running beside the next attempt."""
        if self.items_done == self._saved_done:
            return
        written = self._same_row(state=JobState.RUNNING, **self._claim()).update(
            **{self.cursor_field: self.cursor_value, "items_done": self.items_done}
        )
        self._cursor_saved_at, self._saved_done = time.monotonic(), self.items_done
        if not written:
            self.lose_claim()

    def _report_progress(self, total: int | None) -> None:
        """Progress is the items done over every attempt, against `total()` while it holds
        (a total that turned out short is dropped rather than shown as over 100%)."""
        done = self.items_done
        self.set_progress(done, total if total is not None and done <= total else None)


def _seconds(delay: timedelta | float) -> float:
    return delay.total_seconds() if isinstance(delay, timedelta) else float(delay)


def _close(items: Iterator[Any]) -> None:
    """Close a generator (or a query's `.iterator()`) left part-way, releasing its cursor."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def iteration_problems(model: type[IterativeJob]) -> list[str]:
    """What is wrong with an iterative job model, each starting with the attribute's name:
    without a check, a misspelt `cursor_field` would fail only in the first attempt's save."""
    problems = []
    try:
        field = model._meta.get_field(model.cursor_field)
    except FieldDoesNotExist:
        field = None
    if field is None or not field.concrete or field.name == "items_done":
        problems.append(
            f"cursor_field names {model.cursor_field!r}: no field of this model to keep the "
            "cursor in. Add one (e.g. cursor = models.BigIntegerField(null=True)), or set "
            "cursor_field to the field's name."
        )
    elif not field.null:
        problems.append(f"cursor_field {field.name!r} must be nullable: None means not started.")
    interval = model.cursor_save_interval
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        problems.append(f"cursor_save_interval must be seconds (0 or more), got {interval!r}.")
    limit = model.max_iteration_seconds
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0
    ):
        problems.append(f"max_iteration_seconds must be None or positive seconds, got {limit!r}.")
    for hook in ("items", "each"):
        if getattr(model, hook) is getattr(IterativeJob, hook):
            problems.append(f"{hook}() is not defined: an iterative job needs items() and each().")
    if model.perform is not IterativeJob.perform:
        problems.append("perform() is redefined: an iterative job's perform() runs the items.")
    return problems
