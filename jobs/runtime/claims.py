"""Which job models a worker asks for work, and how many rows of each: claims whose cost does
not grow with the number of job models.

A project may have twenty job models of which one has work. Asking every table on every
claim costs a statement per empty table; instead the worker keeps a memo, per queue and
model, of the tables it found empty ("known empty until"), and asks only the others:

- A claim that returns fewer rows than asked marks its (queue, model) empty.
- The mark ends at the earliest of: a wake-up naming that model (or any model) in that queue
  (`jobs.db.wakeup`), the model's next pending row coming due (`Claims.next_due`), or one
  poll interval. The interval is the safety net for rows made runnable without a wake-up
  (raw SQL, SQLite, a lost notification): a lost hint costs at most one interval, as a lost
  notification did when every claim asked every table.
- A wake-up heard while a claim is under way is applied at the start of the next claim,
  after the marks that claim made, so a mark never outlives a hint sent after it.

When more than one model of a queue may have work, one statement (`Engine.peek`) reads the
priorities of each one's next rows without locking, and the claim is shared out by priority
across models; at equal priority the models take turns (round robin), so a flood of one job
type cannot starve another. Each model's share is then claimed with the usual statement
(`Engine.claim`), so what a claim guarantees is unchanged: the peek only chooses where to ask.

Paused queues (`jobs.models.QueuePause`) are not asked: a (queue, model) paused is no
candidate, and a worker serving every queue leaves the paused ones out of its statements.
The pauses are read from their table into a small set, again only when a claim is about to
ask a table and the set is more than `PAUSES_REFRESH` old, or at once when a wake-up says
they changed: one small read a second at most, none for an idle worker whose tables are all
known empty, never one per claim. A change of the pauses drops every mark, so a resumed
queue is asked at once.

A model with limits (`jobs.db.limits`) may have due rows that no claim can take yet: their key
is at its concurrency limit or out of starts for the rate's period. Its mark is therefore not
ended by its rows coming due (they may be due and blocked), only by a wake-up, by one of this
worker's own jobs of that model finishing while due rows may wait for room (`freed`: a slot
came free; a worker whose model has nothing due skips that claim), or by time: one poll
interval, or for a rate limit the rate's spacing (period / starts) if shorter. So a worker
whose only work is blocked neither spins nor waits long once a slot or a start comes free; a
slot freed by another worker is announced by a wake-up where the database has them
(`jobs.execution`), else seen within one interval.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from jobs import timesource
from jobs.db import engine_for
from jobs.db.limits import limits_of
from jobs.db.wakeup import ANY_QUEUE, PAUSES, Hint
from jobs.models import Job, QueuePause

# How old the worker's copy of the pauses may grow before a claim reads them again: the
# longest a pause takes to stop a worker that heard no wake-up (SQLite, a lost notification).
PAUSES_REFRESH = 1.0


def _mark_seconds(model: type[Job], interval: float) -> float:
    """How long a short claim marks `model` empty: the poll interval, or for a rate limit of
    N starts per period the spacing period / N if that is shorter."""
    limits = limits_of(model)
    if limits is None or limits.rate is None:
        return interval
    starts, period = limits.rate
    return min(interval, period.total_seconds() / starts)


class Claims:
    """The claims of one worker loop, from its main thread; `hear()` from any thread.

    `queues` in order of precedence, or None for every queue; `models` in the order they
    take turns.
    """

    def __init__(
        self,
        models: Sequence[type[Job]],
        *,
        queues: Sequence[str] | None,
        interval: float,
        using: str,
    ) -> None:
        self.models = list(models)
        self.queues = list(queues) if queues else None
        self.interval = interval
        self.using = using
        self._index = {model._meta.label: index for index, model in enumerate(self.models)}
        self._limited = [limits_of(model) is not None for model in self.models]
        # The limited models marked since a claim came back short and not known since to
        # have no due rows: their rows may be waiting for room (`freed`).
        self._maybe_blocked: set[int] = set()
        # How long a claim that came back short marks the model empty (see the docstring).
        self._mark_seconds = [_mark_seconds(model, interval) for model in self.models]
        self._turn = 0  # the model asked first at equal priority: round robin
        # (queue or None, model index) -> monotonic time until which it is known empty
        self._empty_until: dict[tuple[str | None, int], float] = {}
        self._heard: list[Hint] = []
        self._lock = threading.Lock()
        # (queue, model label or "" for every model), as read at monotonic `_paused_read`
        self._paused: frozenset[tuple[str, str]] = frozenset()
        self._paused_read = -math.inf

    def hear(self, hints: Iterable[Hint]) -> None:
        """Take wake-ups from the listener thread; applied at the start of the next claim."""
        with self._lock:
            self._heard.extend(hints)

    def forget(self) -> bool:
        """Drop every mark, so the next claim asks every table; whether there was any."""
        had = bool(self._empty_until)
        self._empty_until.clear()
        return had

    def claim(self, limit: int, *, worker: str, now: datetime) -> list[Job]:
        """Claim up to `limit` runnable jobs: first queue first; within a queue, by priority
        across models, the models taking turns at equal priority.

        Asks only the models not known empty: one claim statement per model asked, plus one
        peek where more than one model of a queue may have work.
        """
        self._apply_heard()
        claimed: list[Job] = []
        for queue in self.queues or [None]:
            if len(claimed) >= limit:
                break
            claimed += self._claim_queue(queue, limit - len(claimed), worker=worker, now=now)
        return claimed

    def freed(self, model: type[Job]) -> None:
        """One of this worker's jobs of `model` finished: if the model has limits and may
        have due rows waiting for room, its next claim may find some, so ask it again."""
        if (index := self._index.get(model._meta.label)) in self._maybe_blocked:
            self._maybe_blocked.discard(index)
            for key in [key for key in self._empty_until if key[1] == index]:
                del self._empty_until[key]

    def held_back(self) -> bool:
        """Whether a model with a rate limit has due rows that no claim took: they wait for a
        start to leave the window, and a burst worker waits with them rather than leaving
        them behind. (Rows over a concurrency limit wait for running jobs, which a worker
        that is leaving has none of.) One statement, only for rate-limited models."""
        rated = [
            index
            for index, model in enumerate(self.models)
            if (limits := limits_of(model)) is not None and limits.rate is not None
        ]
        if not rated:
            return False
        due = engine_for(self.using).next_due(
            [self.models[index] for index in rated],
            queues=self.queues,
            skip_queues=[self._skipped(index) for index in rated],
        )
        now = timesource.now()
        return any(at is not None and at <= now for at in due)

    def next_due(self) -> datetime | None:
        """When the earliest pending row of any served model becomes runnable (None: none).

        One statement for every model. Each model's mark ends no later than its own next
        row's `run_at`, so a job scheduled for later is claimed when it comes due. Rows of
        paused queues (as last read) are left out: they are not runnable here. A model with
        limits that is marked is due no sooner than its mark ends (see the docstring).
        """
        skip = [self._skipped(index) for index in range(len(self.models))]
        due = engine_for(self.using).next_due(
            self.models, queues=self.queues, skip_queues=skip if any(skip) else ()
        )
        clock, now = time.monotonic(), timesource.now()
        for index, at in enumerate(due):
            if at is None:
                self._maybe_blocked.discard(index)
                continue
            ends = clock + (at - now).total_seconds()
            marks = [
                self._empty_until[key]
                for key in ((queue, index) for queue in self.queues or [None])
                if key in self._empty_until
            ]
            if self._limited[index] and marks:
                if at > now:
                    self._maybe_blocked.discard(index)  # nothing due: nothing waits for room
                due[index] = max(at, now + timedelta(seconds=min(marks) - clock))
                continue
            for queue in self.queues or [None]:
                key = (queue, index)
                if key in self._empty_until:
                    self._empty_until[key] = min(self._empty_until[key], ends)
        return min((at for at in due if at is not None), default=None)

    def _claim_queue(
        self, queue: str | None, wanted: int, *, worker: str, now: datetime
    ) -> list[Job]:
        clock = time.monotonic()
        candidates = [
            index
            for index in range(len(self.models))
            if self._empty_until.get((queue, index), -math.inf) <= clock
        ]
        for index in candidates:
            self._empty_until.pop((queue, index), None)
        if candidates:
            self._read_pauses(clock)
        if queue is not None:
            candidates = [index for index in candidates if not self._is_paused(queue, index)]
        if not candidates:
            return []
        skip = {index: self._skipped(index) for index in candidates} if queue is None else {}
        if len(candidates) == 1:
            shares, seen_all = {candidates[0]: wanted}, set()
        else:
            peeked = engine_for(self.using).peek(
                [self.models[index] for index in candidates],
                queue=queue,
                now=now,
                limit=wanted,
                skip_queues=[skip[index] for index in candidates] if any(skip.values()) else (),
            )
            heads = dict(zip(candidates, peeked, strict=True))
            shares = self._shares(heads, wanted)
            # A model whose every runnable row the peek saw, and that we claim all of, is
            # empty after this claim: no need to peek at it again before a wake-up.
            seen_all = {
                index
                for index, rows in heads.items()
                if index in shares and shares[index] == len(rows) < wanted
            }
            for index, rows in heads.items():
                if not rows:
                    self._mark_empty(queue, index, clock)
        claimed: list[Job] = []
        for index, share in shares.items():
            jobs = engine_for(self.using).claim(
                self.models[index],
                queue=queue,
                worker=worker,
                # Read again, not the `now` of the peek: a lease runs from the claim's own
                # statement, not from before the round trips that came first.
                now=timesource.now(),
                limit=share,
                skip_queues=skip.get(index, ()),
            )
            if jobs and len(shares) == 1:
                self._turn = (index + 1) % len(self.models)
            if len(jobs) < share or index in seen_all:
                self._mark_empty(queue, index, clock)
            claimed += jobs
        claimed.sort(key=lambda job: -job.priority)  # stable: the models' turns stay in order
        return claimed

    def _shares(self, heads: dict[int, list[int]], wanted: int) -> dict[int, int]:
        """How many rows to claim from each model: `wanted` picks, each the highest priority
        among the models' next rows, the first in turn winning ties and passing the turn on.

        Returns {model index: rows}, in the order the models were first picked; the turn
        passes to the model after the last one picked.
        """
        count = len(self.models)
        taken: dict[int, int] = {}
        turn = self._turn
        for _ in range(wanted):
            best, best_priority = None, 0
            for offset in range(count):
                index = (turn + offset) % count
                priorities = heads.get(index, [])
                if taken.get(index, 0) < len(priorities):
                    priority = priorities[taken.get(index, 0)]
                    if best is None or priority > best_priority:
                        best, best_priority = index, priority
            if best is None:
                break
            taken[best] = taken.get(best, 0) + 1
            turn = (best + 1) % count
        self._turn = turn
        return taken

    def _read_pauses(self, clock: float) -> None:
        """Read the pauses again if the copy is more than PAUSES_REFRESH old (or a wake-up
        said they changed); a change drops every mark, so a resumed queue is asked at once."""
        if clock - self._paused_read < PAUSES_REFRESH:
            return
        paused = frozenset(
            QueuePause.objects.using(self.using).values_list("queue", "model").iterator()
        )
        self._paused_read = time.monotonic()
        if paused != self._paused:
            self._paused = paused
            self._empty_until.clear()

    def _is_paused(self, queue: str, index: int) -> bool:
        return bool(self._paused) and (
            (queue, "") in self._paused or (queue, self.models[index]._meta.label) in self._paused
        )

    def _skipped(self, index: int) -> list[str]:
        """The paused queues of model `index`, for a statement over several queues."""
        label = self.models[index]._meta.label
        return sorted(queue for queue, model in self._paused if model in ("", label))

    def _mark_empty(self, queue: str | None, index: int, clock: float) -> None:
        self._empty_until[(queue, index)] = clock + self._mark_seconds[index]
        if self._limited[index]:
            self._maybe_blocked.add(index)

    def _apply_heard(self) -> None:
        with self._lock:
            heard, self._heard = self._heard, []
        for queue, label in heard:
            if label == PAUSES:  # read them before the next statement; ask the queue again
                self._paused_read, label = -math.inf, None
            if label is not None and label not in self._index:
                continue  # a model this worker does not serve
            for key in list(self._empty_until):
                marked_queue, index = key
                if (label is None or self._index[label] == index) and (
                    queue == ANY_QUEUE or marked_queue is None or marked_queue == queue
                ):
                    del self._empty_until[key]
