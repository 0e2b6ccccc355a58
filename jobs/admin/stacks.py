"""Where is a running job now? Its page shows the stack of the thread running it.

The worker's lease keeper writes the stack on the job's row every few seconds (`jobs.lease`),
so the page shows it as of a few seconds ago, with its age; **Refresh stack** asks the
workers to write it now (a notification on PostgreSQL, which they answer within a second;
elsewhere it comes at the next write). A live page (`jobs/live.js`) shows each as it comes.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.utils.html import format_html

from jobs import timesource
from jobs.admin.display import format_moment
from jobs.db.wakeup import ask_for_stacks
from jobs.durations import format_duration
from jobs.joblog import shows_current_stack
from jobs.lease import stack_interval
from jobs.models import Job, JobState


class StackView:
    """The "Where it is now" section and the "Refresh stack" button of `JobAdmin`."""

    @admin.display(description="stack")
    def stack_display(self, job: Job) -> str:
        if job.state != JobState.RUNNING:
            return "- (shown while it runs)"
        if not shows_current_stack(job):
            return "not yet written: its worker writes it every few seconds"
        age = format_duration(timesource.now() - job.stack_at)
        return format_html(
            '<p class="job-quiet">as of {} ({} ago), innermost call last</p>'
            '<pre class="job-stack" style="white-space:pre-wrap">{}</pre>',
            format_moment(job.stack_at),
            age,
            job.stack,
        )

    def request_stack_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: ask the worker running this job for its stack now, then back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self.get_object(request, object_id)
        if job is None:
            raise Http404(f"no {self.model._meta.verbose_name} {object_id}")
        if not self.has_view_or_change_permission(request, job):
            raise PermissionDenied
        if job.state != JobState.RUNNING:
            self.message_user(request, f"{job.label} is not running.", messages.WARNING)
        elif ask_for_stacks(job._state.db):
            self.message_user(request, "Asked its worker for its stack; it shows within a second.")
        else:
            every = format_duration(timedelta(seconds=stack_interval()))
            self.message_user(request, f"Its worker writes its stack every {every}: it shows then.")
        return HttpResponseRedirect(self.change_url(job))
