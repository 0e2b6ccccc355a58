"""Assertions about what was enqueued, with failure messages that show what was instead.

`assert_enqueued()` asks the database, so it sees every enqueue that committed (or is
visible to the test's transaction), from any code path. `captured_jobs()` listens to
`job_enqueued` instead, to answer "what did this block enqueue, in what order".
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models as db_models

from jobs import signals
from jobs.models import Job

SHOWN_ROWS = 10


def assert_enqueued(model: type[Job], count: int | None = None, **fields: Any) -> list[Job]:
    """Assert that rows of `model` with these `fields` were enqueued; return them.

    Enqueued means `enqueue()` or `bulk_enqueue()` has been called on the row, whatever
    happened since: a job that already ran (inline, or drained) still counts, a row only
    created (`new`) does not. `fields` are `filter()` arguments, lookups included
    (`instance__name="web-1"`, `run_at__gt=...`). With `count`, exactly that many must
    match; without, at least one. The failure message lists the enqueued rows of `model`
    and, for each, the fields that differ.
    """
    matching = list(_enqueued(model).filter(**fields))
    if (len(matching) == count) if count is not None else matching:
        return matching
    expected = f"exactly {count}" if count is not None else "at least 1"
    raise AssertionError(
        f"expected {expected} {_name(model)} enqueued{_with(fields)}, found {len(matching)}."
        f"\n{_report(model, fields)}"
    )


def assert_not_enqueued(model: type[Job], **fields: Any) -> None:
    """Assert that no row of `model` with these `fields` was enqueued (see `assert_enqueued`)."""
    matching = list(_enqueued(model).filter(**fields)[: SHOWN_ROWS + 1])
    if matching:
        rows = "\n".join(_line(job, "") for job in matching[:SHOWN_ROWS])
        more = "\n  ..." if len(matching) > SHOWN_ROWS else ""
        raise AssertionError(
            f"expected no {_name(model)} enqueued{_with(fields)}, found:\n{rows}{more}"
        )


@contextmanager
def captured_jobs() -> Iterator[list[Job]]:
    """Collect every job enqueued inside the block, in order, into the yielded list.

    Each entry is a copy of the job as it was enqueued (its fields at the time), whatever
    runs it later. Captured from the `job_enqueued` signal, which is sent inside the
    enqueuer's transaction: a job whose transaction then rolled back is in the list too
    (`assert_enqueued()` asks the database instead).
    """
    captured: list[Job] = []

    def capture(sender: type[Job], job: Job, **kwargs: Any) -> None:
        captured.append(copy.copy(job))

    signals.job_enqueued.connect(capture, weak=False)
    try:
        yield captured
    finally:
        signals.job_enqueued.disconnect(capture)


def _enqueued(model: type[Job]) -> db_models.QuerySet:
    return model._base_manager.filter(requested_at__isnull=False).order_by("pk")


def _name(model: type[Job]) -> str:
    return f"{model._meta.label} job"


def _with(fields: dict[str, Any]) -> str:
    if not fields:
        return ""
    return " with " + ", ".join(f"{name}={value!r}" for name, value in fields.items())


def _report(model: type[Job], fields: dict[str, Any]) -> str:
    """The enqueued rows of `model`, each with the fields where it differs from `fields`."""
    rows = list(_enqueued(model)[: SHOWN_ROWS + 1])
    if not rows:
        return f"No {_name(model)} was enqueued."
    lines = [f"Enqueued {_name(model)}s:"]
    for job in rows[:SHOWN_ROWS]:
        lines.append(_line(job, _differences(job, fields)))
    if len(rows) > SHOWN_ROWS:
        lines.append("  ...")
    return "\n".join(lines)


def _line(job: Job, differences: str) -> str:
    return f"  {job.label} ({job.state}){differences}"


def _differences(job: Job, fields: dict[str, Any]) -> str:
    """`: name=actual (expected wanted), ...` for each of `fields` the row does not match."""
    differing = []
    for name, wanted in fields.items():
        if _matches(job, name, wanted):
            continue
        if "__" in name:
            differing.append(f"{name} does not match {wanted!r}")
        else:
            differing.append(f"{name}={getattr(job, name)!r} (expected {wanted!r})")
    return ": " + ", ".join(differing) if differing else ""


def _matches(job: Job, name: str, wanted: Any) -> bool:
    return type(job)._base_manager.filter(pk=job.pk, **{name: wanted}).exists()
