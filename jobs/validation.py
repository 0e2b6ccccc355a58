"""Checks of what people pass to enqueue() and runjobs, with messages that say how to fix it."""

import re

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
PRIORITY_MIN = -100
PRIORITY_MAX = 100


def validate_queue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise ValueError(
            f"queue name {name!r} is invalid: use 1 to 100 letters, digits, '_', '-', '.' or ':'"
        )
    return name


def validate_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an integer, got {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"priority {priority} is out of range: use {PRIORITY_MIN} to {PRIORITY_MAX} "
            "(higher runs first)"
        )
    return priority


def validate_max_attempts(max_attempts: object) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer of at least 1, got {max_attempts!r}")
    return max_attempts


def parse_queue_list(text: str) -> list[str]:
    """Parse `--queues a,b`: order is precedence, so duplicates and blanks are mistakes."""
    names = [part.strip() for part in text.split(",")]
    if not any(names):
        raise ValueError(
            f"{text!r} names no queue; give names separated by commas, e.g. urgent,default"
        )
    if "" in names:
        raise ValueError(f"{text!r} has an empty queue name between commas")
    for name in names:
        validate_queue_name(name)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{text!r} lists {', '.join(duplicates)} more than once")
    return names


def validate_timeout(timeout: object) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(f"timeout must be None or a whole number of seconds >= 1, got {timeout!r}")
    return timeout


def validate_retention(retention: object) -> dict:
    """A mapping of finished state to days (a number >= 0, or None for "keep forever")."""
    states = ("succeeded", "failed", "cancelled")
    if not isinstance(retention, dict):
        raise ValueError(f"retention must be a dict of state to days, got {retention!r}")
    for state, days in retention.items():
        if state not in states:
            raise ValueError(
                f"retention names {state!r}; the finished states are {', '.join(states)}"
            )
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int | float) or days < 0
        ):
            raise ValueError(f"retention for {state} must be None or days >= 0, got {days!r}")
    return retention


def reject_unknown_keys(where: str, given: dict, known: tuple[str, ...], noun: str) -> None:
    """A misspelt setting key ("crom") is an error, never silently ignored."""
    if unknown := sorted(set(given) - set(known)):
        raise ValueError(
            f"{where} has unknown {noun}(s) {', '.join(map(repr, unknown))}; "
            f"the {noun}s are {', '.join(known)}"
        )


# Each row option a job model or `jobs enqueue` may set, with its check (`manage.py check`
# applies them to a model's class defaults, the CLI to the values given).
OPTION_VALIDATORS = {
    "queue": validate_queue_name,
    "priority": validate_priority,
    "max_attempts": validate_max_attempts,
    "timeout": validate_timeout,
}
