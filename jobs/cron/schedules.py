"""`JOBS_SCHEDULE`: jobs the clock enqueues at set times, read and checked in one place.

    JOBS_SCHEDULE = {
        "nightly-export": {
            "job": "exports.Export",           # a job model, app_label.ModelName
            "cron": "0 3 * * *",               # or "every": "15m"
            "timezone": "Europe/Paris",        # for cron; default settings.TIME_ZONE
            "fields": {"format": "csv"},       # the new row's field values
            "queue": "exports",                # optional, as enqueue(queue=...)
            "priority": 0,                     # optional, as enqueue(priority=...)
            "missed": "run_once",              # or "skip": see below
        },
    }

A cron expression has the five standard fields (minute resolution) or is an alias such as
`@hourly`; `croniter` reads it, in the schedule's timezone, so "0 3 * * *" means 03:00 local
time across daylight-saving changes. An interval (`every`) counts from the Unix epoch in
UTC, so every clock agrees on the slots: "1h" fires on the hour.

A slot is on time for ON_TIME_WINDOW after it. A slot no clock enqueued within that window
(every worker was down) is missed: "run_once" (the default) enqueues the latest missed slot
once, when a clock comes back; "skip" drops it and waits for the next slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.conf import schedule_setting
from jobs.conf.queues import probe_queues
from jobs.durations import format_duration, parse_duration
from jobs.models import Job, LatencyProbe
from jobs.models.job import LIFECYCLE_FIELDS
from jobs.models.options import ROW_OPTIONS
from jobs.validation import reject_unknown_keys, validate_priority, validate_queue_name

ON_TIME_WINDOW = timedelta(minutes=5)
MISSED_POLICIES = ("run_once", "skip")
KEYS = ("job", "cron", "every", "timezone", "fields", "queue", "priority", "missed")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROBE_EVERY = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    name: str
    model: type[Job]
    cron: str | None = None
    every: timedelta | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    fields: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    missed: str = "run_once"

    def latest_slot(self, now: datetime) -> datetime:
        """The last slot at or before `now`, in UTC."""
        now = now.astimezone(UTC).replace(microsecond=0)
        if self.every is not None:
            step = int(self.every.total_seconds())
            return EPOCH + timedelta(seconds=int((now - EPOCH).total_seconds()) // step * step)
        local = (now + SECOND).astimezone(self.timezone)
        return croniter(self.cron, local).get_prev(datetime).astimezone(UTC)

    def next_slot(self, now: datetime) -> datetime:
        """The first slot after `now`, in UTC."""
        if self.every is not None:
            return self.latest_slot(now) + self.every
        local = now.astimezone(UTC).replace(microsecond=0).astimezone(self.timezone)
        return croniter(self.cron, local).get_next(datetime).astimezone(UTC)

    def describe(self) -> str:
        if self.every is not None:
            return f"every {format_duration(self.every)}"
        return f"cron {self.cron!r} ({self.timezone.key})"


def configured_schedules() -> list[Schedule]:
    """`JOBS_SCHEDULE` and the latency probes, parsed; ValueError if any is unusable."""
    schedules = [parse_schedule(name, spec) for name, spec in raw_schedules().items()]
    return schedules + probe_schedules()


def raw_schedules() -> dict:
    raw = schedule_setting()
    if not isinstance(raw, dict):
        raise ValueError(f"JOBS_SCHEDULE must be a dict of name to schedule, got {raw!r}")
    return raw


def probe_schedules() -> list[Schedule]:
    return [
        Schedule(
            name=f"probe:{queue}",
            model=LatencyProbe,
            every=PROBE_EVERY,
            queue=queue,
            missed="skip",
        )
        for queue in probe_queues()
    ]


def parse_schedule(name: object, spec: object) -> Schedule:
    """One entry of JOBS_SCHEDULE; every mistake is a ValueError naming the entry."""
    where = f"JOBS_SCHEDULE[{name!r}]"
    if not isinstance(name, str) or not name or len(name) > 200 or name.startswith("probe:"):
        raise ValueError(
            f"{where}: a schedule's name must be text of 1 to 200 characters, not starting "
            "with 'probe:'"
        )
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a dict with 'job' and 'cron' or 'every', got {spec!r}")
    reject_unknown_keys(where, spec, KEYS, "key")
    model = _job_model(spec.get("job"), where)
    cron, every = spec.get("cron"), spec.get("every")
    if (cron is None) == (every is None):
        raise ValueError(f"{where} needs exactly one of 'cron' (e.g. '0 3 * * *') or 'every'")
    if cron is not None:
        _check_cron(cron, where)
    else:
        every = parse_duration(every, f"{where}['every']")
        if every % SECOND or every < SECOND:
            raise ValueError(f"{where}['every'] must be a whole number of seconds, got {every}")
    missed = spec.get("missed", "run_once")
    if missed not in MISSED_POLICIES:
        raise ValueError(
            f"{where}['missed'] is {missed!r}; use {' or '.join(map(repr, MISSED_POLICIES))}"
        )
    options = {}
    try:
        if (queue := spec.get("queue")) is not None:
            options["queue"] = validate_queue_name(queue)
        if (priority := spec.get("priority")) is not None:
            options["priority"] = validate_priority(priority)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return Schedule(
        name=name,
        model=model,
        cron=cron,
        every=every,
        timezone=_timezone(spec.get("timezone", settings.TIME_ZONE or "UTC"), where),
        fields=_fields(model, spec.get("fields", {}), where),
        missed=missed,
        **options,
    )


def _job_model(label: object, where: str) -> type[Job]:
    if not isinstance(label, str):
        raise ValueError(f"{where}['job'] must name a job model as 'app_label.ModelName'")
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise ValueError(
            f"{where}['job'] is {label!r}, which is not an installed model; "
            "write it as 'app_label.ModelName'"
        ) from None
    if not issubclass(model, Job) or model._meta.abstract:
        raise ValueError(f"{where}['job'] is {label!r}, which is not a job model")
    return model


def _check_cron(cron: object, where: str) -> None:
    if not isinstance(cron, str):
        raise ValueError(f"{where}['cron'] must be text such as '0 3 * * *', got {cron!r}")
    if not (cron.strip().startswith("@") or len(cron.split()) == 5):
        raise ValueError(
            f"{where}['cron'] is {cron!r}: it needs the five fields minute hour day month "
            "weekday (e.g. '0 3 * * *'), or an alias such as '@hourly'"
        )
    if not croniter.is_valid(cron):
        raise ValueError(
            f"{where}['cron'] is {cron!r}, which is not a valid cron expression "
            "(minute hour day month weekday, e.g. '*/15 * * * *')"
        )


def _timezone(name: object, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{where}['timezone'] is {name!r}, which is not a known timezone "
            "(use an IANA name such as 'Europe/Paris')"
        ) from None


def _fields(model: type[Job], values: object, where: str) -> dict[str, Any]:
    """The fields' values, each converted by its own model field, as a check can (no query)."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}['fields'] must be a dict of field name to value")
    settable = {
        f.name: f
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in LIFECYCLE_FIELDS and f.name not in ROW_OPTIONS
    }
    settable.update({f.attname: f for f in settable.values()})
    cleaned = {}
    for name, value in values.items():
        if name not in settable:
            raise ValueError(
                f"{where}['fields'] names {name!r}, which {model._meta.label} cannot be given "
                f"(its fields: {', '.join(sorted(f.name for f in set(settable.values())))}; "
                "set queue and priority as keys of the schedule)"
            )
        field = settable[name]
        try:
            # A foreign key is given by its target's key, so it is set through `<name>_id`.
            cleaned[field.attname if field.is_relation else name] = field.to_python(value)
        except ValidationError as exc:
            raise ValueError(
                f"{where}['fields'][{name!r}] is {value!r}: {' '.join(exc.messages)}"
            ) from None
    return cleaned
