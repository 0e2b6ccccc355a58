"""Durations as people write them in settings: "30s", "10m", "1h30m", "2d", or seconds."""

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(value: object, what: str) -> timedelta:
    """A positive duration from a timedelta, a number of seconds or text like "1h30m".

    `what` names the setting in the error, so the message says where the mistake is.
    """
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    elif isinstance(value, str) and DURATION.match(text := value.strip().lower()):
        duration = timedelta(
            seconds=sum(float(number) * UNITS[unit] for number, unit in PART.findall(text))
        )
    else:
        raise ValueError(
            f"{what} is {value!r}; write a duration such as '30s', '10m', '1h30m' or '2d', "
            "or a number of seconds"
        )
    if duration <= timedelta(0):
        raise ValueError(f"{what} is {value!r}; it must be longer than zero")
    return duration
