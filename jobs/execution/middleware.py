"""Job middleware: code around every attempt, listed in `JOBS_MIDDLEWARE` as Django lists its
own.

    JOBS_MIDDLEWARE = [
        "shop.middleware.Instrumentation",
        "shop.middleware.ProvisionNotification",
    ]

Each entry is the dotted path of a factory with Django's middleware shape: called once per
process with the next step (`perform_next`), it returns a callable taking the job. The first
entry is outermost: it sees the job first and the attempt's exception last. The innermost step
calls `job.perform()`.

    class Instrumentation:
        def __init__(self, perform_next):
            self.perform_next = perform_next

        def __call__(self, job):
            began = time.monotonic()
            try:
                self.perform_next(job)
            finally:
                statsd.timing(job._meta.label, time.monotonic() - began)

What a middleware can do, with what the framework already has:

- **see the attempt's exception**: `perform_next` raises what `perform()` raised (including
  `Snooze` and `Cancelled`, which are BaseExceptions: catch `Exception` to leave them be);
- **skip the attempt**: return without calling `perform_next` (the attempt succeeds, having done
  nothing), or call `job.snooze(delay)` (it runs again later, no attempt counted), or raise
  `jobs.errors.Cancelled` (it ends cancelled);
- **retry it**: raise; the job's `retry_on`, `discard_on` and `max_attempts` decide, as for an
  exception from `perform()` (a swallowed exception makes the attempt a success).

The chain runs inside the attempt: what a middleware logs is kept on the job's row with the
job's own lines, and its time counts toward the job's `timeout`. It is built once per process
(`chain()`), when the first attempt runs, from the setting as it is then; a path that does not
import, or a factory that refuses its `perform_next`, is reported by `manage.py check`
(jobs.E015) before any worker starts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from jobs.conf import middleware_setting
from jobs.errors import ConfigurationError

if TYPE_CHECKING:
    from jobs.models import Job

Step = Callable[["Job"], object]


def perform(job: Job) -> None:
    """The innermost step: the job's own work."""
    job.perform()


def paths() -> tuple[str, ...]:
    """`JOBS_MIDDLEWARE` as a tuple of dotted paths (empty when unset)."""
    value = middleware_setting()
    if isinstance(value, str) or not all(isinstance(path, str) for path in value):
        raise ConfigurationError(
            f"JOBS_MIDDLEWARE must be a list of dotted paths to middleware factories, got {value!r}"
        )
    return tuple(value)


def chain() -> Step:
    """The attempt's steps for the current `JOBS_MIDDLEWARE`, built once per list of paths."""
    return _build(paths())


@functools.cache
def _build(dotted: tuple[str, ...]) -> Step:
    step: Step = perform
    for path in reversed(dotted):
        step = _wrap(path, step)
    return step


def _wrap(path: str, perform_next: Step) -> Step:
    """The step the factory at `path` makes around `perform_next`."""
    try:
        factory = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"JOBS_MIDDLEWARE: cannot import {path!r}: {exc}") from exc
    step = factory(perform_next)
    if not callable(step):
        raise ConfigurationError(
            f"JOBS_MIDDLEWARE: {path} returned {step!r}, not a callable taking a job"
        )
    return step


def problems() -> list[str]:
    """What is wrong with `JOBS_MIDDLEWARE`, for `manage.py check`: a setting that is not a
    list of paths, or each path that does not import, whose factory raises, or that returns
    something that cannot be called."""
    try:
        dotted = paths()
    except ConfigurationError as exc:
        return [str(exc)]
    found = []
    for path in dotted:
        try:
            _wrap(path, perform)
        except ConfigurationError as exc:
            found.append(str(exc))
        except Exception as exc:
            found.append(f"JOBS_MIDDLEWARE: {path}(perform_next) raised {exc!r}")
    return found
