"""Concurrency and rate limits per key, kept by the claim.

A job model may say

    concurrency_key = "account"         # rows with the same account ...
    concurrency_limit = 2               # ... run at most 2 at a time
    rate_limit = (10, timedelta(minutes=1))  # ... and start at most 10 times a minute

Without a `concurrency_key`, the whole model is one key. A row whose key is NULL is not
limited (as a NULL never collides in a unique index).

**Concurrency is a database constraint.** A limited model has one more column,
`concurrency_slot`: a running row with a key holds one of the slots 0..limit-1, and a partial
unique index over (key, slot) for the running state, with a check that a running keyed row
holds a slot in range (`jobs.models.options`), makes a third running row per key impossible
for any writer: the claim, `run()`, the admin, raw SQL. A finished, failed or rescued row is
no longer running, so its slot is free again with nothing to expire or count down: a dead
worker's slots free when rescue takes its rows back, through the lease.

**The claim chooses the slots.** Claims of a limited model take a lock for that model
(`Engine.lock_claims`: an advisory transaction lock on PostgreSQL; SQLite's single writer
already is one), so each claim reads the slots the previous one took, and the unique index
never has to refuse one. Under that lock the claim reads, in one statement, the running rows
per key and the starts per key in the rate's period, walks the pending rows in claim order
leaving out keys already full, and takes at most the free room of each key, assigning it the
lowest free slots. A key at its limit keeps its rows pending and in their place (no attempt is
counted), and never holds back other keys' rows behind them.

**The rate is a sliding window over the model's own `started_at`.** A start is allowed while
fewer than N rows of the key have `started_at` after now - period (later ones too: a claim
whose clock reading came before another's still counts that one's starts), so any window of
one period holds at most N starts. A row keeps only its latest start, so a row that starts
again within one period (a quick retry) counts once: the window can then hold N starts plus
such retries. Rate limits are kept by the claim, not by an index: raw SQL that marks rows
running is not held to them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobs.errors import JobNotRunnable
from jobs.states import JobState

if TYPE_CHECKING:
    from jobs.models import Job

# The column a running row of a model with a concurrency limit holds its slot in.
SLOT_FIELD = "concurrency_slot"


@dataclass(frozen=True)
class Limits:
    """A job model's limits, as its class attributes declare them."""

    key: str | None  # the field whose values are the keys; None: the whole model is one key
    concurrency: int | None  # rows of one key running at once
    rate: tuple[int, timedelta] | None  # starts per period per key

    def describe(self) -> str:
        """One line for logs, the admin and errors: "at most 2 running, 10 starts per 0:01:00
        per account"."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"at most {self.concurrency} running")
        if self.rate is not None:
            parts.append(f"{self.rate[0]} starts per {_period(self.rate[1])}")
        return f"{', '.join(parts)} per {self.key or 'model'}"


def _period(period: timedelta) -> str:
    seconds = period.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = int(seconds // size)
            return unit if count == 1 else f"{count} {unit}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"


def is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def concurrency_limit(model: type[Job]) -> int | None:
    """`model.concurrency_limit` if it is well-formed (a positive int), else None (`manage.py
    check` reports a malformed one: jobs.E014)."""
    limit = getattr(model, "concurrency_limit", None)
    return limit if is_positive_int(limit) else None


def rate_limit(model: type[Job]) -> tuple[int, timedelta] | None:
    """`model.rate_limit` if it is well-formed ((positive int, positive timedelta)), else
    None (`manage.py check` reports a malformed one: jobs.E014)."""
    rate = getattr(model, "rate_limit", None)
    if (
        isinstance(rate, tuple | list)
        and len(rate) == 2
        and is_positive_int(rate[0])
        and isinstance(rate[1], timedelta)
        and rate[1] > timedelta(0)
    ):
        return int(rate[0]), rate[1]
    return None


@functools.cache
def limits_of(model: type[Job]) -> Limits | None:
    """`model`'s limits, or None when it has none (or they are malformed, or its key names no
    concrete field: `manage.py check` says which)."""
    concurrency, rate = concurrency_limit(model), rate_limit(model)
    if concurrency is None and rate is None:
        return None
    key = getattr(model, "concurrency_key", None)
    meta = model._meta.concrete_model._meta if model._meta.proxy else model._meta
    if key is not None and key not in {field.name for field in meta.concrete_fields}:
        return None
    return Limits(key=key, concurrency=concurrency, rate=rate)


def _choice(
    connection: Any, model: type[Job], limits: Limits, queue_filter: str, lock_clause: str
) -> tuple[list[str], str, str | None]:
    """The CTEs choosing one round's rows, the FROM clause reading them (`chosen`, with each
    row's free slot), and the expression of a chosen row's slot (None without a concurrency
    limit). See `claim_text` for the arguments."""
    quote = connection.ops.quote_name
    column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    key = column[limits.key] if limits.key else "0"
    keyed = f" AND {key} IS NOT NULL" if limits.key else ""
    group = f" GROUP BY {key}" if limits.key else ""
    order = "jprio DESC, jrun, jid"
    ctes, full, rooms, joins = [], [], [], []
    if limits.concurrency is not None:
        ctes.append(
            f"busy AS (SELECT {key} AS jkey, COUNT(*) AS n FROM {table}"
            f" WHERE {column['state']} = %s{keyed}{group})"
        )
        full.append(f"(SELECT jkey FROM busy WHERE n >= {limits.concurrency})")
        joins.append("LEFT JOIN busy ON busy.jkey = ranked.jkey")
        rooms.append(f"jr <= {limits.concurrency} - COALESCE(busy.n, 0)")
    if limits.rate is not None:
        ctes.append(
            f"recent AS (SELECT {key} AS jkey, COUNT(*) AS n FROM {table}"
            f" WHERE {column['started_at']} > %s{keyed}{group})"
        )
        full.append(f"(SELECT jkey FROM recent WHERE n >= {limits.rate[0]})")
        joins.append("LEFT JOIN recent ON recent.jkey = ranked.jkey")
        rooms.append(f"jr <= {limits.rate[0]} - COALESCE(recent.n, 0)")
    not_full = "".join(f" AND ({key} IS NULL OR {key} NOT IN {keys})" for keys in full)
    ctes.append(
        f"head AS (SELECT {pk} AS jid, {key} AS jkey, {column['priority']} AS jprio,"
        f" {column['run_at']} AS jrun FROM {table}"
        f" WHERE {column['state']} = %s AND {column['run_at']} <= %s{queue_filter}{not_full}"
        f" ORDER BY {column['priority']} DESC, {column['run_at']}, {pk} LIMIT %s{lock_clause})"
    )
    ctes.append(
        f"ranked AS (SELECT head.*, ROW_NUMBER() OVER (PARTITION BY head.jkey ORDER BY {order})"
        f" AS jr FROM head)"
    )
    ctes.append(
        f"chosen AS (SELECT ranked.* FROM ranked {' '.join(joins)}"
        f" WHERE ranked.jkey IS NULL OR ({' AND '.join(rooms)}) ORDER BY {order} LIMIT %s)"
    )
    if limits.concurrency is None:
        return ctes, "chosen", None
    slots = " UNION ALL ".join(f"SELECT {n} AS jslot" for n in range(limits.concurrency))
    ctes.append(
        f"free AS (SELECT jkeys.jkey, s.jslot, ROW_NUMBER() OVER"
        f" (PARTITION BY jkeys.jkey ORDER BY s.jslot) AS jr"
        f" FROM (SELECT DISTINCT jkey FROM chosen WHERE jkey IS NOT NULL) AS jkeys"
        f" CROSS JOIN ({slots}) AS s WHERE NOT EXISTS (SELECT 1 FROM {table}"
        f" WHERE {column['state']} = %s AND {key} = jkeys.jkey"
        f" AND {column[SLOT_FIELD]} = s.jslot))"
    )
    source = "chosen LEFT JOIN free ON free.jkey = chosen.jkey AND free.jr = chosen.jr"
    return ctes, source, "free.jslot"


def claim_text(
    connection: Any,
    model: type[Job],
    limits: Limits,
    queue_filter: str,
    lock_clause: str,
    changes: tuple[str, ...],
) -> str:
    """One round of a limited model's claim (see the module's docstring), for `claim_params`.

    Each row it returns is the claimed row's columns and, last, how many pending rows the
    round's walk looked at: fewer than it may look at (`walk_length`) means it saw
    every row that had room, and another round would find none.

    `queue_filter` is the claim's filter on the queue column (with its placeholders),
    `lock_clause` how the database keeps two claims off one row, `changes` the columns the
    claim sets besides state, attempts and the slot.
    """
    quote = connection.ops.quote_name
    column = {field.name: quote(field.column) for field in model._meta.concrete_fields}
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    ctes, source, slot = _choice(connection, model, limits, queue_filter, lock_clause)
    sets = [f"{column[name]} = %s" for name in changes]
    if slot is not None:
        sets.append(f"{column[SLOT_FIELD]} = {slot}")
    return (
        f"WITH {', '.join(ctes)} UPDATE {table}"
        f" SET {column['state']} = %s, {column['attempts']} = {column['attempts']} + 1,"
        f" {', '.join(sets)} FROM {source} WHERE {table}.{pk} = chosen.jid"
        f" RETURNING {', '.join(f'{table}.{name}' for name in column.values())},"
        " (SELECT COUNT(*) FROM head)"
    )


def choice_text(connection: Any, model: type[Job], limits: Limits, queue_filter: str) -> str:
    """The choice of one round of `claim_text`, for a database whose UPDATE can neither read
    a CTE nor return rows (MariaDB, MySQL): a SELECT of each chosen row's primary key and
    slot (NULL without one) and the walk's length, with `choice_params`. It locks nothing;
    the caller holds the model's claim lock and locks the chosen rows after."""
    ctes, source, slot = _choice(connection, model, limits, queue_filter, "")
    return (
        f"WITH {', '.join(ctes)} SELECT chosen.jid, {slot or 'NULL'},"
        f" (SELECT COUNT(*) FROM head) FROM {source}"
    )


def walk_length(wanted: int) -> int:
    """How many pending rows a round's walk looks at to take `wanted`: more than it takes, so
    that rows of keys at their room are cut and the rows behind them taken in the same round,
    not only in the next one."""
    return 2 * wanted


def claim_params(
    limits: Limits,
    adapt: Callable[[datetime], Any],
    now: datetime,
    queues: list[str],
    wanted: int,
    changes: list,
) -> list:
    """The parameters of `claim_text` for a round taking up to `wanted` rows, in the order of
    its placeholders: `queues` those of its queue filter, `changes` the values of its
    `changes`, datetimes passed through `adapt` as the database takes them."""
    return [*choice_params(limits, adapt, now, queues, wanted), JobState.RUNNING, *changes]


def choice_params(
    limits: Limits, adapt: Callable[[datetime], Any], now: datetime, queues: list[str], wanted: int
) -> list:
    """The parameters of `choice_text` (see `claim_params`)."""
    params: list = []
    if limits.concurrency is not None:
        params.append(JobState.RUNNING)
    if limits.rate is not None:
        params.append(adapt(now - limits.rate[1]))
    params += [JobState.PENDING, adapt(now), *queues, walk_length(wanted), wanted]
    if limits.concurrency is not None:
        params.append(JobState.RUNNING)
    return params


def admission(job: Job, limits: Limits, now: datetime, using: str) -> dict[str, int]:
    """What claiming `job` to run it now outside a worker (`Job.run()`) writes besides the
    usual, under its model's claim lock: the slot it takes, if it needs one.

    Raises `JobNotRunnable` naming the limit when its key has no free slot or no start left
    in the rate's period: `run()` keeps the limits a worker keeps.
    """
    model = type(job)
    rows = model._base_manager.using(using)
    value = None
    if limits.key is not None:
        field = model._meta.get_field(limits.key)
        value = getattr(job, field.attname)
        if value is None:
            return {}
        rows = rows.filter(**{field.attname: value})
    named = f"{limits.key}={value!r}" if limits.key else "its model"
    if limits.rate is not None:
        starts, period = limits.rate
        if rows.filter(started_at__gt=now - period).count() >= starts:
            raise JobNotRunnable(
                f"{job.label} cannot start now: {named} has had {starts} starts in the last "
                f"{_period(period)} (rate_limit)"
            )
    if limits.concurrency is None:
        return {}
    taken = set(rows.filter(state=JobState.RUNNING).values_list(SLOT_FIELD, flat=True))
    free = [slot for slot in range(limits.concurrency) if slot not in taken]
    if not free:
        raise JobNotRunnable(
            f"{job.label} cannot start now: {named} has {limits.concurrency} running "
            "(concurrency_limit)"
        )
    return {SLOT_FIELD: free[0]}
