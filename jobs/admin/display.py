"""How the jobs admin shows things: states and statuses as coloured badges, times compact
with the full moment on hover, durations in the settings' notation (`jobs.durations`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html

from jobs.admin.operations import SCHEDULED, STOP_REQUESTED
from jobs.durations import format_duration
from jobs.models import JobState

# Keyed by `jobs.admin.operations.shown_state()`: a scheduled job is not runnable yet, and a
# job asked to stop is on its way out, so neither looks like the plain state.
STATE_COLOURS = {
    JobState.NEW: "#6c757d",
    JobState.WAITING: "#0aa2c0",
    JobState.PENDING: "#0d6efd",
    SCHEDULED: "#6f42c1",
    JobState.RUNNING: "#fd7e14",
    STOP_REQUESTED: "#a33a00",
    JobState.SUCCEEDED: "#198754",
    JobState.FAILED: "#dc3545",
    JobState.CANCELLED: "#495057",
}
WORKER_STATUS_COLOURS = {"alive": "#198754", "stale": "#dc3545", "stopped": "#6c757d"}
# How an operation's button looks: `default` (the admin's Save colour) moves a job on,
# `danger` stops one; Run now is the admin's plain button, being for debugging.
BUTTON_STYLES = {"cancel": "danger", "kill": "danger", "run_now": ""}
# Operations on a selection that ask for confirmation when it holds more than one job.
CONFIRMED = frozenset({"requeue", "cancel", "kill"})
# Operations that ask first even for one job, from its page: stopping a process is drastic.
CONFIRMED_ALWAYS = frozenset({"kill"})
# Jobs a confirmation page names one by one; it counts the rest.
CONFIRM_LISTED = 20
# Characters of an error message the changelist shows; its title has the whole message.
ERROR_SHOWN = 40
# The jobs admin's own styles: buttons for operations, compact cells, badges.
STYLESHEETS = {"all": ("jobs/admin.css",)}

TIMELINE_FIELDS = (
    "state_display",
    "requested_at",
    "run_at",
    "started_at",
    "finished_at",
    "wait_time",
    "run_time",
    "attempts",
    "claimed_by",
    "cancel_requested_at",
    "progress_display",
    "memory_growth_display",
    "traceparent",
)
ERROR_FIELDS = ("error_type", "error_message", "error_traceback_display", "error_history_display")
ACTIVITY_FIELDS = ("log_display", "operator_history")
# The finished-within filter's windows.
FINISHED_WINDOWS = {
    "1h": ("in the last hour", timedelta(hours=1)),
    "24h": ("in the last 24 hours", timedelta(days=1)),
    "7d": ("in the last 7 days", timedelta(days=7)),
}
# How often a live page (the dashboard, a job's page, the workers page) refreshes itself.
LIVE_INTERVAL_SECONDS = 5


def live(page: str, regions: str, *, default: bool) -> dict[str, object]:
    """The context of a page's "Live" box (`admin/jobs/live.html`, `jobs/live.js`): the kind
    of page, the CSS selectors of the parts refreshed, whether it starts on."""
    return {
        "page": page,
        "regions": regions,
        "default": "on" if default else "off",
        "interval": LIVE_INTERVAL_SECONDS,
    }


# Audit entries shown on a job's page, newest first; the History page has them all.
HISTORY_SHOWN = 20


def format_until(delay: timedelta) -> str:
    """How soon, for a badge, in whole minutes once it is a minute or more: "in 40s",
    "in 59m", "in 2h5m", in the notation of every other duration (`format_duration`)."""
    seconds = max(0, int(delay.total_seconds()))
    if seconds >= 60:
        seconds -= seconds % 60
    return f"in {format_duration(timedelta(seconds=seconds))}"


def format_moment(moment: datetime) -> str:
    """The full local time of `moment`, as a title shows it: "2026-11-22 12:00:00 UTC"."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def compact_time(moment: datetime | None, now: datetime) -> str:
    """`moment` in as few characters as a changelist column can spare, the full time on hover:
    the time of day if it is today, the day and minute if this year, else the date."""
    if moment is None:
        return "-"
    local, today = timezone.localtime(moment), timezone.localtime(now).date()
    if local.date() == today:
        text = f"{local:%H:%M:%S}"
    elif local.year == today.year:
        text = f"{local:%b} {local.day}, {local:%H:%M}"
    else:
        text = f"{local:%Y-%m-%d}"
    return format_html(
        '<time class="job-time" datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        format_moment(moment),
        text,
    )


def format_memory_growth(kb: float) -> str:
    """A memory growth (KiB, `memory_growth_kb`) as the admin shows it, in MB with its sign
    and one decimal: "+0.0 MB", "+12.3 MB"."""
    return f"{kb / 1024:+.1f} MB"


def badge(
    colour: str, text: str, title: str = "", css_class: str = "job-state", tag: str = "span"
) -> str:
    """A coloured label, the way the admin shows a job's state and a worker's status."""
    return format_html(
        '<{} class="{}" style="color:#fff;background:{};padding:1px 6px;'
        'border-radius:8px;white-space:nowrap"{}>{}</{}>',
        tag,
        css_class,
        colour,
        format_html(' title="{}"', title) if title else "",
        text,
        tag,
    )
