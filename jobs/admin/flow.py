"""What holds a job model's rows back, as its changelist shows it: the "Flow control" panel.

A model's flow controls are its `unique_on`, its concurrency and rate limits
(`jobs.db.limits`) and the pauses of its queues (`jobs.models.QueuePause`). The panel says
what the model declares and what uses it now: the keys whose running rows hold slots, the keys
that started rows in the rate's current period, the pauses that keep its rows pending.

**Bounded on any table.** The panel costs the same few queries whatever the number of keys or
rows: the pauses (one), the slot holders (one aggregate over the running rows, then their rows
for at most `TOP_KEYS` keys, at most the limit each), the starts (one aggregate). Each
aggregate names the `TOP_KEYS` busiest keys and counts the rest in the same statement (a
window over the groups), so a key too many is "and N more", never one more query. Counts are a
snapshot: a claim may take or free a slot while the page is drawn.

Times are the database's (`jobs.timesource.now()`), as the claim reads them, so the starts
counted are those the next claim counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Window

from jobs import timesource
from jobs.db.limits import SLOT_FIELD, Limits, limits_of
from jobs.durations import format_duration
from jobs.models import Job, JobState, QueuePause
from jobs.models.options import unique_fields

# The keys the panel names, busiest first, per part (slot holders, starts); it counts the rest.
TOP_KEYS = 10
# The pauses it lists: more than this on one model is a page for the pauses admin.
PAUSES_SHOWN = 10
# How the panel names the one key of a model without a `concurrency_key`.
WHOLE_MODEL = "whole model"


@dataclass(frozen=True)
class HeldSlot:
    """A running row of a concurrency-limited model: the slot it holds, its change page."""

    pk: Any
    slot: int | None
    url: str


@dataclass(frozen=True)
class KeyLoad:
    """One key's use of a limit now: `count` of the limit (running rows, or starts in the
    rate's period), with `url` the changelist of those rows and, for slots, the rows."""

    value: Any  # the key's value; None for a model that is one key
    count: int
    url: str
    slots: tuple[HeldSlot, ...] = ()

    @property
    def label(self) -> str:
        return WHOLE_MODEL if self.value is None else str(self.value)


@dataclass(frozen=True)
class Busiest:
    """The busiest keys of one part of the panel, and how many more keys it leaves unnamed."""

    keys: tuple[KeyLoad, ...] = ()
    more: int = 0


@dataclass(frozen=True)
class FlowControl:
    """What the panel shows for one model; `pauses_url` is "" where pauses are not in the
    admin site."""

    unique_on: tuple[str, ...]
    limits: Limits | None
    holders: Busiest | None  # None: no concurrency limit
    starts: Busiest | None  # None: no rate limit
    pauses: list[QueuePause] = field(default_factory=list)
    pauses_url: str = ""

    @property
    def key_name(self) -> str:
        return (self.limits.key if self.limits else None) or WHOLE_MODEL

    @property
    def rate_period(self) -> str:
        """The rate's period in the settings' notation ("1s", "5m"): the window counted."""
        return format_duration(self.limits.rate[1]) if self.limits and self.limits.rate else ""


def flow_control(
    queryset: QuerySet,
    *,
    change_url: Callable[[Any], str],
    changelist_url: str,
    pauses_url: str = "",
) -> FlowControl | None:
    """The panel of `queryset`'s model, read from `queryset`'s database; None when the model
    declares no control and no pause applies to it (the changelist then shows no panel).

    `queryset` is the model's rows unfiltered (the admin's changelist filters are the
    operator's view, not the claim's); `change_url(pk)` names a job's page.
    """
    model = queryset.model
    unique_on, limits = unique_fields(model), limits_of(model)
    pauses = list(applying_pauses(queryset)[:PAUSES_SHOWN])
    if not (unique_on or limits or pauses):
        return None
    holders = starts = None
    if limits is not None and limits.concurrency is not None:
        holders = slot_holders(queryset, limits, change_url, changelist_url)
    if limits is not None and limits.rate is not None:
        cutoff = timesource.now() - limits.rate[1]
        started = queryset.filter(started_at__gt=cutoff)
        starts = Busiest(*_busiest(started, limits.key, changelist_url, {}))
    return FlowControl(unique_on, limits, holders, starts, pauses, pauses_url)


def applying_pauses(queryset: QuerySet) -> QuerySet:
    """The pauses that keep rows of `queryset`'s model pending: those naming the model, and
    those of a whole queue that is its default one or holds pending rows of it. One query."""
    model = queryset.model
    labels = {model._meta.label, model._meta.concrete_model._meta.label}
    waiting = queryset.filter(state=JobState.PENDING, queue=OuterRef("queue"))
    default_queue = model._meta.get_field("queue").get_default()
    return QueuePause.objects.using(queryset.db).filter(
        Q(model__in=labels) | Q(model="") & (Q(queue=default_queue) | Exists(waiting))
    )


def slot_holders(
    queryset: QuerySet, limits: Limits, change_url: Callable[[Any], str], changelist_url: str
) -> Busiest:
    """The keys whose running rows hold the most slots, with those rows (two queries)."""
    running = queryset.filter(state=JobState.RUNNING)
    state = {"state__exact": JobState.RUNNING}
    loads, more = _busiest(running, limits.key, changelist_url, state)
    if not loads:
        return Busiest()
    key = limits.key
    if key is not None:
        running = running.filter(**{f"{key}__in": [load.value for load in loads]})
    rows = running.order_by(*([key] if key else []), SLOT_FIELD, "pk")
    held: dict[Any, list[HeldSlot]] = {}
    # At most the limit per key: the database holds the running rows to it.
    for value, pk, slot in rows.values_list(key or "pk", "pk", SLOT_FIELD)[
        : len(loads) * limits.concurrency
    ]:
        held.setdefault(value if key else None, []).append(HeldSlot(pk, slot, change_url(pk)))
    return Busiest(
        tuple(replace(load, slots=tuple(held.get(load.value, ()))) for load in loads), more
    )


def _busiest(
    rows: QuerySet, key: str | None, changelist_url: str, filters: dict[str, str]
) -> tuple[tuple[KeyLoad, ...], int]:
    """The `TOP_KEYS` keys with the most `rows`, busiest first, and how many keys go unnamed,
    in one query. Rows whose key is NULL are no key's: the limits leave them alone."""
    if key is None:
        count = rows.count()
        load = KeyLoad(None, count, _filtered(changelist_url, filters))
        return ((load,) if count else ()), 0
    # COUNT(*) OVER () after the GROUP BY: how many keys there are, in every group's row.
    groups = list(
        rows.filter(**{f"{key}__isnull": False})
        .values(key)
        .annotate(jcount=Count("pk"), jkeys=Window(Count("*")))
        .order_by("-jcount", key)
        .values_list(key, "jcount", "jkeys")[:TOP_KEYS]
    )
    loads = tuple(
        KeyLoad(value, count, _filtered(changelist_url, {**filters, key: value}))
        for value, count, _ in groups
    )
    return loads, (groups[0][2] if groups else 0) - len(loads)


def _filtered(changelist_url: str, filters: dict[str, Any]) -> str:
    return f"{changelist_url}?{urlencode(filters)}" if filters else changelist_url


def job_flow_line(job: Job) -> str:
    """One line for a job's page on where it stands under its model's limits: its key's value
    and, while it runs, its slot ("" for a model without limits)."""
    limits = limits_of(type(job))
    if limits is None:
        return ""
    if limits.key is None:
        where = f"{WHOLE_MODEL} (one key)"
    else:
        value = getattr(job, job._meta.get_field(limits.key).attname)
        if value is None:
            return f"{limits.key} is empty: the limits do not apply to this job"
        where = f"{limits.key} = {value}"
    slot = getattr(job, SLOT_FIELD, None)
    if job.state == JobState.RUNNING and slot is not None:
        where += f", running in slot {slot} (slots 0 to {limits.concurrency - 1})"
    return f"{where}; {limits.describe()}"
