"""What `JobAdmin` shows of a job: its columns in the job lists and the read-only fields of
its page (state badges, times, durations, errors, progress, log, the operator's history).

Secrets never show: a sensitive field is a mask wherever it is listed.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from jobs import timesource
from jobs.admin.display import (
    ERROR_SHOWN,
    HISTORY_SHOWN,
    STATE_COLOURS,
    badge,
    compact_time,
    format_memory_growth,
    format_moment,
    format_until,
)
from jobs.admin.operations import SCHEDULED, STOP_REQUESTED, shown_state
from jobs.durations import format_duration
from jobs.models import Job, JobState
from jobs.models.job import MASK


class JobColumns:
    """The display methods `JobAdmin` lists (`list_display`, `readonly_fields`)."""

    @admin.display(description="state", ordering="state")
    def state_badge(self, job: Job, *, wrap: bool = True) -> str:
        """The state as a badge, with the exact time and the reason in its title. With
        `wrap` (the changelist), a long one takes two short lines to keep the column narrow:
        "Scheduled / in 59 min", "Stop / requested"."""
        shown, label, when, note = _state_label(job, timesource.now())
        if wrap and (when or " " in label):
            first, second = (label, when) if when else label.split(" ", 1)
            text = format_html("{}<br> {}", first, second)  # the space: for a text reading
            return badge(STATE_COLOURS[shown], text, note, "job-state two-lines")
        return badge(STATE_COLOURS[shown], f"{label} · {when}" if when else label, note)

    @admin.display(description="state")
    def state_display(self, job: Job) -> str:
        """The job page's state: the badge, and in words what a scheduled or stopping job
        waits for."""
        note = _state_label(job, timesource.now())[3]
        return format_html(
            '{} <span class="job-quiet job-state-note">{}</span>',
            self.state_badge(job, wrap=False),
            note,
        )

    @admin.display(description="queue", ordering="queue")
    def queue_display(self, job: Job) -> str:
        """The queue, and under it the priority unless it is 0: one column for both, since
        most jobs keep the default and the list has no width to spare."""
        if not job.priority:
            return job.queue
        return format_html(
            '{}<br><small class="job-quiet">priority {}</small>', job.queue, job.priority
        )

    @admin.display(description="attempts", ordering="attempts")
    def attempts_display(self, job: Job) -> str:
        return f"{job.attempts} of {job.max_attempts}"

    @admin.display(description="requested", ordering="requested_at")
    def requested(self, job: Job) -> str:
        return compact_time(job.requested_at, timesource.now())

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: Job) -> str:
        return compact_time(job.finished_at, timesource.now())

    @admin.display(description="wait", ordering="wait_duration")
    def wait_time(self, job: Job) -> str:
        """From requested to started: how long the job queued."""
        return format_duration(job.wait_duration)

    @admin.display(description="run time", ordering="run_duration")
    def run_time(self, job: Job) -> str:
        return format_duration(job.run_duration)

    @admin.display(description="error", ordering="error_type")
    def error_summary(self, job: Job) -> str:
        """Why the last attempt failed: the exception's class, under it the start of its
        message, all of it on hover. Not on a succeeded job: an earlier attempt's error is history
        there (its page keeps it under "Last error")."""
        if not job.error_type or job.state == JobState.SUCCEEDED:
            return "-"
        return format_html(
            '<span class="job-error" title="{}: {}"><strong>{}</strong><span>{}</span></span>',
            job.error_type,
            job.error_message,
            job.error_type.rpartition(".")[2],
            Truncator(job.error_message).chars(ERROR_SHOWN),
        )

    @admin.display(description="traceback")
    def error_traceback_display(self, job: Job) -> str:
        if not job.error_traceback:
            return "-"
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', job.error_traceback)

    @admin.display(description="earlier failures")
    def error_history_display(self, job: Job) -> str:
        """Each kept failure, newest first, so "failed 3 times, here is each" is one look."""
        if not job.error_history:
            return "-"
        return format_html(
            "<ol reversed>{}</ol>",
            format_html_join(
                "",
                "<li><strong>attempt {} at {} on {}</strong>: {}: {}"
                '<pre style="white-space:pre-wrap">{}</pre></li>',
                (
                    (
                        entry["attempt"],
                        entry["at"],
                        entry["worker"] or "-",
                        entry["type"],
                        entry["message"],
                        entry["traceback"],
                    )
                    for entry in reversed(job.error_history)
                ),
            ),
        )

    @admin.display(description="memory growth")
    def memory_growth_display(self, job: Job) -> str:
        """How far the latest attempt raised its worker's peak resident memory."""
        if job.memory_growth_kb is None:
            return "-"
        growth = format_memory_growth(job.memory_growth_kb)
        return f"{growth}: how far the latest attempt raised its worker's peak RSS"

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> str:
        if job.progress_done is None:
            return "-"
        if not job.progress_total:
            return f"{job.progress_done} done"
        percent = 100 * job.progress_done // job.progress_total
        return format_html(
            '<progress class="job-progress" value="{}" max="{}"></progress> {} of {} ({}%)',
            job.progress_done,
            job.progress_total,
            job.progress_done,
            job.progress_total,
            percent,
        )

    @admin.display(description="log of the latest attempt")
    def log_display(self, job: Job) -> str:
        if not job.log:
            return "-"
        return format_html('<pre class="job-log" style="white-space:pre-wrap">{}</pre>', job.log)

    @admin.display(description="operator actions")
    def operator_history(self, job: Job) -> str:
        """Who did what to this job from the admin, newest first (Django's admin log)."""
        entries = (
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(job, for_concrete_model=False),
                object_id=str(job.pk),
            )
            .select_related("user")
            .order_by("-action_time")[:HISTORY_SHOWN]
        )
        if not entries:
            return "-"
        return format_html(
            '<ol class="job-audit">{}</ol>',
            format_html_join(
                "",
                "<li>{} by {}: {}</li>",
                (
                    (
                        f"{entry.action_time:%Y-%m-%d %H:%M:%S}",
                        entry.user,
                        entry.get_change_message(),
                    )
                    for entry in entries
                ),
            ),
        )

    @admin.display(description="sensitive fields")
    def sensitive_display(self, job: Job) -> str:
        """Names only: the values are secrets, set where the job is created, never shown."""
        return format_html_join(
            "",
            "<div>{}: {}</div>",
            (
                (job._meta.get_field(name).verbose_name, MASK if getattr(job, name) else "-")
                for name in job.sensitive_fields
            ),
        )


def _state_label(job: Job, now: datetime) -> tuple[str, str, str, str]:
    """What the admin says of `job`'s state at `now`: (`shown_state()`, its label, how soon
    a scheduled job is due, a sentence on what a scheduled or stopping job waits for)."""
    shown = shown_state(job, now)
    if shown == SCHEDULED:
        note = f"Pending, not to start before {format_moment(job.run_at)}."
        return shown, "Scheduled", format_until(job.run_at - now), note
    if shown == STOP_REQUESTED:
        note = (
            f"Running; asked to stop at {format_moment(job.cancel_requested_at)}. It stops "
            "when it next checks for a cancel request, or when it finishes."
        )
        return shown, "Stop requested", "", note
    return shown, job.get_state_display(), "", ""


def masked_column(name: str):
    """A changelist column that shows that a sensitive field is set, never its value."""

    @admin.display(description=name.replace("_", " "))
    def masked(job) -> str:
        return MASK if getattr(job, name) else "-"

    return masked
