"""The log lines a job writes while it performs, kept on its row for the admin to show.

A job logs the way any Python code does (`logging.getLogger(__name__).info(...)`, or
`self.logger`). One handler on the root logger copies every record emitted on a thread that
is performing a job into that job's `JobLog`; records from other threads pass it by. What
reaches the handler is what the project's logging configuration lets through: a logger
with `propagate = False` or a level above INFO keeps its lines out. (A project with no logging
configuration gets a console from `runjobs` at INFO, see `jobs.runtime.console`, so there its jobs'
INFO lines are kept.) Lines are bounded, the newest kept, so a job that logs in a loop cannot
grow its row without limit.

The handler must not change what the project's own logging does. Python prints a record
that meets no handler through its last-resort handler (warnings and errors, to stderr); a
handler on the root logger would end that for every record of the process, so this one
hands such a record to the last-resort handler itself, exactly as Python would have.

Records made on a performing thread have the job's secrets (`sensitive_fields`) masked as
they are made, through the log record factory, so no handler sees them: not the console,
not a file, not an error tracker. A record whose message cannot be formatted (`"%d" % "x"`)
becomes a line that says so: a job's logging mistake must not fail the job.

Whatever a job writes can be kept only as text the database takes: `storable()` replaces
what PostgreSQL refuses (a NUL byte, a lone surrogate), so a job that logs or raises such
text still has its outcome written.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from jobs.states import JobState

# How a line reads in a job's log, and on the console `runjobs` sets up (jobs.runtime.console).
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What one attempt's log may hold on the row, in characters; older lines are dropped first.
LOG_LIMIT = 16_000
LINE_LIMIT = 2_000
# A job's `error_history`: its latest entries, each with the end of its traceback and log.
ERROR_HISTORY_LIMIT = 10
HISTORY_TRACEBACK_LIMIT = 4_000
HISTORY_LOG_LIMIT = 4_000

# What no text column takes: NUL (PostgreSQL), and a lone surrogate (no encoder sends it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"

_performing = threading.local()
_install_lock = threading.Lock()


class JobLog:
    """The lines logged by one attempt, newest kept within `LOG_LIMIT` characters."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0
        self._lock = threading.Lock()  # the worker's main thread reads it on a timeout

    def add(self, line: str) -> None:
        line = storable(line)
        if len(line) > LINE_LIMIT:
            line = f"{line[:LINE_LIMIT]} [...]"
        with self._lock:
            self._lines.append(line)
            self._size += len(line) + 1
            while self._size > LOG_LIMIT and len(self._lines) > 1:
                self._size -= len(self._lines.popleft()) + 1
                self._dropped += 1

    def text(self) -> str:
        with self._lock:
            lines = list(self._lines)
            dropped = self._dropped
        head = [f"[{dropped} earlier line(s) dropped]"] if dropped else []
        return "\n".join(head + lines)


def storable(value: Any) -> Any:
    """`value` with every character a database refuses in text (NUL, a lone surrogate)
    replaced by U+FFFD, in strings and in the lists and dicts of a JSON value; anything else
    as it is. What the framework writes from a job's text goes through here first, so the
    row's UPDATE cannot fail over it (and the job be re-run, its error lost)."""
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:  # the common case, at C speed
            return value
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


def bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Cut long text to `limit` characters, saying how much was cut.

    A message is best read from its start; a traceback from its end, where the frame that
    raised is.
    """
    if len(text) <= limit:
        return text
    marker = f"[{len(text) - limit} characters cut]"
    kept = limit - len(marker) - 1
    return f"{marker}\n{text[-kept:]}" if keep_end else f"{text[:kept]}\n{marker}"


def escaped(text: str, limit: int) -> str:
    """`text` cut to `limit`, in ASCII: anything else as a backslash escape. For a note that
    must be stored whatever it quotes."""
    return storable(bounded(text, limit)).encode("ascii", "backslashreplace").decode("ascii")


def with_history(
    job: Any, at: datetime, error_type: str, message: str, traceback: str = "", log: str = ""
) -> list[dict[str, Any]]:
    """`job.error_history` with one more failed attempt (the current one) at its end: a
    failure recorded by its worker, or a rescue's "worker lost"; the oldest dropped past
    `ERROR_HISTORY_LIMIT`."""
    entry = {
        "attempt": job.attempts,
        "at": at.isoformat(),
        "worker": job.claimed_by,
        "type": error_type,
        "message": message,
        "traceback": bounded(traceback, HISTORY_TRACEBACK_LIMIT, keep_end=True),
        "log": bounded(log, HISTORY_LOG_LIMIT, keep_end=True),
    }
    return [*job.error_history, entry][-ERROR_HISTORY_LIMIT:]


def without_job_text(
    job: Any, changes: dict[str, Any], refusal: Exception, at: datetime
) -> dict[str, Any]:
    """An outcome's `changes` for a database that refused them: the same state, times and
    attempts, the job's text replaced by short ASCII that names the refusal (the error's type
    and message kept escaped and cut short, its log, traceback and `success_fields` values
    dropped: any of them may be what was refused, and a row left running would be rescued
    and its job run again)."""
    why = escaped(f"the outcome could not be stored as it was ({refusal})", 500)
    changes = dict(changes)
    dropped = [name for name in type(job).success_fields if name in changes]
    for name in dropped:
        del changes[name]
    if "log" in changes or dropped:
        *others, last = ["log", *dropped]
        what = f"{', '.join(others)} and {last} were" if others else "log was"
        changes["log"] = f"[{why}; this attempt's {what} dropped]"
    if changes.get("error_type"):  # a failure (a success only clears these)
        message = escaped(changes["error_message"], 1_000)
        changes["error_type"] = escaped(changes["error_type"], 200)
        changes["error_message"] = f"{message}\n[{why}; its traceback was dropped]"
        changes["error_traceback"] = ""
        changes["error_history"] = with_history(
            job, at, changes["error_type"], changes["error_message"]
        )
    return changes


class _CaptureHandler(logging.Handler):
    """Copies records emitted on a performing thread into that thread's `JobLog`, and is
    otherwise invisible: a record no other handler saw still reaches the last resort."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter(LINE_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if (log := getattr(_performing, "log", None)) is not None:
            try:
                log.add(self.format(record))
            except Exception:  # a broken record must not fail the job that logged it
                self.handleError(record)
        last_resort = logging.lastResort
        if (
            last_resort is not None
            and record.levelno >= last_resort.level
            and not self._seen_elsewhere(record)
        ):
            last_resort.handle(record)

    def _seen_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether another handler is on the record's way up, as `Logger.callHandlers` walks
        it: then Python would not have used the last resort, so neither do we."""
        logger: logging.Logger | None = logging.Logger.manager.loggerDict.get(record.name)
        if not isinstance(logger, logging.Logger):  # a record made by hand, or for the root
            logger = logging.getLogger()
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False


_handler = _CaptureHandler()


def capture_handler() -> logging.Handler:
    """The handler that keeps jobs' lines (on the root logger once a job has run)."""
    return _handler


class _MaskingRecordFactory:
    """Wraps the record factory: a record made on a performing thread has secrets masked."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args, **kwargs) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        if (mask := getattr(_performing, "mask", None)) is not None:
            record.msg, record.args = mask(_message(record)), None
            if record.exc_info:
                record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return record


def _message(record: logging.LogRecord) -> str:
    """The record's message; for one that cannot be formatted, a line saying so (Python's
    handlers would print "--- Logging error ---" and carry on: the job must carry on too)."""
    try:
        return record.getMessage()
    except Exception as exc:
        return (
            f"[could not format this log message: {type(exc).__name__}: {exc}] "
            f"{record.msg!r} % {record.args!r}"
        )


def _install() -> None:
    """Put the handler on the root logger and the masking in the record factory, once per
    process (a logging reconfiguration may drop the handler: it is put back)."""
    root = logging.getLogger()
    if _handler in root.handlers and isinstance(
        logging.getLogRecordFactory(), _MaskingRecordFactory
    ):
        return
    with _install_lock:
        if _handler not in root.handlers:
            root.addHandler(_handler)
        if not isinstance(factory := logging.getLogRecordFactory(), _MaskingRecordFactory):
            logging.setLogRecordFactory(_MaskingRecordFactory(factory))


@contextlib.contextmanager
def capturing(mask: Callable[[str], str]) -> Iterator[JobLog]:
    """Collect what this thread logs inside the block; `mask` hides the job's secrets."""
    _install()
    log = JobLog()
    _performing.log, _performing.mask = log, mask
    try:
        yield log
    finally:
        _performing.log = _performing.mask = None


@contextlib.contextmanager
def masking(mask: Callable[[str], str]) -> Iterator[None]:
    """Mask the job's secrets in what this thread logs inside the block, without keeping the
    lines: how an attempt's outcome is reported after its log was written to the row."""
    _install()
    previous, _performing.mask = getattr(_performing, "mask", None), mask
    try:
        yield
    finally:
        _performing.mask = previous


# Characters of a running job's stack kept on its row (the innermost frames are kept).
STACK_LIMIT = 8_000


def stack_of(thread_id: int | None, mask: Callable[[str], str]) -> str:
    """Where the thread `thread_id` is now, as a traceback prints a stack (outermost call
    first), masked like the job's log and bounded to `STACK_LIMIT`; "" if that thread is not
    running any more. What a running job's page shows ("where is it now?")."""
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    if frame is None:
        return ""
    text = "".join(traceback.format_stack(frame))
    return storable(bounded(mask(text), STACK_LIMIT, keep_end=True))


def shows_current_stack(job: Any) -> bool:
    """Whether `job`'s stored stack is its running attempt's (not an earlier attempt's)."""
    return (
        job.state == JobState.RUNNING
        and job.stack_at is not None
        and job.started_at is not None
        and job.stack_at >= job.started_at
    )
