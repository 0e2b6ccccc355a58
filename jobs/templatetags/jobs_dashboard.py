"""Template tags of the jobs dashboard: its number cells, durations, and charts.

The charts are drawn here as inline SVG, on the server, so the page needs no JavaScript and
nothing from another host: it works offline and behind any content security policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import template
from django.utils.dateformat import time_format
from django.utils.html import format_html
from django.utils.timezone import localtime

from jobs.admin.display import STATE_COLOURS
from jobs.durations import format_duration
from jobs.models import JobState
from jobs.monitoring.dashboard import Counts, Minute

register = template.Library()

WIDTH = 600
HEIGHT = 150
LEFT = 56  # room for the scale's labels
RIGHT = 4
TOP = 8
BOTTOM = 20  # room for the times
WAIT_COLOUR = STATE_COLOURS[JobState.PENDING]


@register.filter
def duration(value: timedelta | None) -> str:
    return format_duration(value)


@register.simple_tag
def count_cell(counts: Counts, links: dict[str, str] | None, name: str) -> str:
    """The count, linking to the changelist that lists those rows when there is one."""
    count = getattr(counts, name)
    if not links:
        return str(count)
    return format_html('<a href="{}">{}</a>', links[name], count)


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str


@dataclass
class Column:
    """One minute: its bars, stacked from the bottom, and what hovering over it says."""

    x: float
    width: float
    title: str
    bars: list[Bar]


@dataclass
class Chart:
    description: str
    peak_label: str
    columns: list[Column]
    times: list[tuple[float, str, str]]  # x, text-anchor, label
    legend: list[tuple[str, str]]  # colour, label
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right: int = WIDTH - RIGHT
    baseline: int = HEIGHT - BOTTOM
    plot_height: int = HEIGHT - BOTTOM - TOP


def _chart(
    minutes: list[Minute],
    stacks: list[list[tuple[float, str]]],
    titles: list[str],
    peak_label: str,
    description: str,
    legend: list[tuple[str, str]],
) -> dict[str, Any]:
    """Lay out one column of stacked (value, colour) bars per minute, scaled to the tallest."""
    peak = max((sum(value for value, _ in stack) for stack in stacks), default=0) or 1
    plot_height = HEIGHT - BOTTOM - TOP
    step = (WIDTH - RIGHT - LEFT) / max(len(minutes), 1)
    columns = []
    for index, (stack, title) in enumerate(zip(stacks, titles, strict=True)):
        x = LEFT + index * step
        bottom = HEIGHT - BOTTOM
        bars = []
        for value, colour in stack:
            height = value / peak * plot_height
            if height > 0:
                bottom -= height
                bars.append(
                    Bar(round(x, 1), round(bottom, 1), round(step - 1, 1), round(height, 1), colour)
                )
        columns.append(Column(round(x, 1), round(step, 1), title, bars))
    times = []
    if minutes:
        middle = len(minutes) // 2
        times = [
            (LEFT, "start", _time(minutes[0])),
            (round(LEFT + (middle + 0.5) * step, 1), "middle", _time(minutes[middle])),
            (WIDTH - RIGHT, "end", _time(minutes[-1])),
        ]
    return {"chart": Chart(description, peak_label, columns, times, legend)}


def _time(minute: Minute) -> str:
    return time_format(localtime(minute.start), "H:i")


def _column(minute: Minute) -> str:
    """What a column's tooltip calls it: its minute, and for the hour's first, partial one,
    the moment it counts from."""
    if minute.since > minute.start:
        return f"{_time(minute)} (from {time_format(localtime(minute.since), 'H:i:s')})"
    return _time(minute)


@register.inclusion_tag("admin/jobs/dashboard/chart.html")
def finished_chart(minutes: list[Minute]) -> dict[str, Any]:
    """Jobs that finished in each minute: succeeded, with those that failed for good on top.
    Together the bars are the "finished 1 h" count: the same rows, the same hour."""
    peak = max((minute.finished for minute in minutes), default=0)
    return _chart(
        minutes,
        [
            [
                (minute.succeeded, STATE_COLOURS[JobState.SUCCEEDED]),
                (minute.failed, STATE_COLOURS[JobState.FAILED]),
            ]
            for minute in minutes
        ],
        [
            f"{_column(minute)}: {minute.succeeded} succeeded, {minute.failed} failed"
            for minute in minutes
        ],
        f"{peak} / min",
        "Jobs finished per minute over the last hour",
        [
            (STATE_COLOURS[JobState.SUCCEEDED], "succeeded"),
            (STATE_COLOURS[JobState.FAILED], "failed for good"),
        ],
    )


@register.inclusion_tag("admin/jobs/dashboard/chart.html")
def wait_chart(minutes: list[Minute]) -> dict[str, Any]:
    """The longest wait, from due to started, of the jobs that finished in each minute."""
    waits = [minute.longest_wait or timedelta(0) for minute in minutes]
    return _chart(
        minutes,
        [[(max(wait.total_seconds(), 0), WAIT_COLOUR)] for wait in waits],
        [
            f"{_column(minute)}: longest wait {format_duration(minute.longest_wait)}"
            for minute in minutes
        ],
        format_duration(max(waits, default=timedelta(0))),
        "Longest wait per minute over the last hour",
        [(WAIT_COLOUR, "longest wait from due to started")],
    )
