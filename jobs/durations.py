"""Durations as people write them in settings: "30s", "10m", "1h30m", "2d", or seconds."""

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
# Longer than any schedule or wait means, and short enough that a date plus it stays a date.
MAX_DAYS = 36_500
MAX_SECONDS = MAX_DAYS * UNITS["d"]


def parse_duration(value: object, what: str) -> timedelta:
    """A positive duration from a timedelta, a number of seconds or text like "1h30m".

    `what` names the setting in the error, so the message says where the mistake is.
    """
    if isinstance(value, timedelta):
        duration = value
    else:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and DURATION.match(text := value.strip().lower()):
            seconds = sum(float(number) * UNITS[unit] for number, unit in PART.findall(text))
        else:
            raise ValueError(
                f"{what} is {value!r}; write a duration such as '30s', '10m', '1h30m' or '2d', "
                "or a number of seconds"
            )
        if not seconds <= MAX_SECONDS:  # also NaN; a timedelta would raise OverflowError
            raise ValueError(f"{what} is {value!r}; the longest duration is {MAX_DAYS}d")
        duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError(f"{what} is {value!r}; it must be longer than zero")
    return duration


def format_duration(duration: timedelta | None) -> str:
    """`duration` written the way `parse_duration` reads it ("45s", "10m", "1h30m"), so a
    message can set a measured wait beside the setting it broke in the same notation.

    Under a second it keeps milliseconds (a quick job's run time is "0.004s"), under a minute
    a tenth of a second (a wait of 30.4s is over an SLA of "30s"); above, whole seconds. The
    admin, the health checks and the CLI all write durations this way; None (no duration
    yet, as a job that has not started) is "-".
    """
    if duration is None:
        return "-"
    seconds = max(duration.total_seconds(), 0.0)
    if seconds < 1:
        return f"{round(seconds, 3):g}s"
    if round(seconds, 1) < 60:
        return f"{round(seconds, 1):g}s"
    remaining = round(seconds)
    parts = []
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
