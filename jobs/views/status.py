"""HTTP that does not lie about resource creation: helpers for views that start jobs.

A view that starts a job has not created anything yet, so it answers `202 Accepted` with a
`Location` of the job's status resource and a `Retry-After` saying when to look there
(`accepted()`). The status resource (`status()`, routed by `jobs.urls` as `jobs-status`)
answers JSON while the work goes on, and once the job has succeeded, `303 See Other` to what
it produced, if its model says (`Job.result_url()`). Both name the job's model as
`app_label.ModelName` (`instances.InstanceProvision`), as logs and the CLI do; the URL has it
in lower case (`instances.instanceprovision`), though the label as named finds it too.

A caller may ask for the synchronous answer instead with `Expect: 200-ok`: the job is run in
the request and the final answer given. `Expectation` reads the header before the view writes
anything, so an expectation the job model cannot meet (`Job.runs_inline = False`) or does
not know is refused with `417 Expectation Failed` while nothing has been created or enqueued.

Who may read a status resource is the job model's decision (`Job.status_visible_to()`);
everyone else gets the same 404 as for a job that does not exist, so ids do not leak.
"""

from __future__ import annotations

import json
import math
from typing import Any, Self, TypeVar

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseRedirectBase
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from jobs import timesource
from jobs.conf import lease_duration
from jobs.errors import JobNotRunnable
from jobs.models import Job
from jobs.states import JobState

J = TypeVar("J", bound=Job)

# RFC 9110's expectation tokens are case-insensitive. "100-continue" is met by the server
# before the view runs (it sent the 100 or had the body already), so it is not ours to refuse:
# curl sends it with every large POST.
ASYNC = "202-accepted"
INLINE = "200-ok"
MET_BY_THE_SERVER = "100-continue"

# What an inline answer is when the run did not succeed for good. A failed or cancelled run
# answers 500: the server could not fulfil the request, and a 2xx would tell a client that
# checks only the status code that the resource was made. An attempt that failed with
# retries left answers 202: the work goes on in the background, which is what 202 says.
INLINE_NOT_DONE = {JobState.FAILED: 500, JobState.CANCELLED: 500}

NOT_FOUND = "No such job."

# The `Retry-After` of a 202 for a job that is due now: an idle worker starts it within a
# second (woken by NOTIFY on PostgreSQL, or by its next poll at runjobs' default --interval).
SOON_SECONDS = 1


class ExpectationFailed(Exception):
    """The request's `Expect` header asks for something this job model cannot do.

    Raised before anything is written; `response` is the `417 Expectation Failed` to send.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.response = JsonResponse({"error": message}, status=417)


class Expectation:
    """How the caller wants the job a view is about to start answered: now, or later.

    Read it first, before the view creates anything (`Expectation.read()` raises
    `ExpectationFailed`); then `start()` the job inside the view's transaction, and after the
    transaction has committed, `respond()`:

        try:
            expect = Expectation.read(request, InstanceProvision)
        except ExpectationFailed as refused:
            return refused.response
        with transaction.atomic():
            instance = Instance.objects.create(name=name)
            job = expect.start(InstanceProvision.objects.create(instance=instance))
        return expect.respond(job)
    """

    def __init__(self, *, inline: bool) -> None:
        self.inline = inline

    @classmethod
    def read(cls, request: HttpRequest, model: type[Job]) -> Self:
        """The caller's expectation for a job of `model`, or `ExpectationFailed`.

        No `Expect` (or `202-accepted`) is the asynchronous path; `200-ok` asks for the job
        to run in this request, which `model.runs_inline = False` refuses. Any other
        expectation is refused too (RFC 9110, section 10.1.1).
        """
        header = request.headers.get("Expect", "")
        wanted = {token.strip().lower() for token in header.split(",")} - {"", MET_BY_THE_SERVER}
        if not wanted <= {ASYNC, INLINE}:
            unknown = ", ".join(sorted(wanted - {ASYNC, INLINE}))
            raise ExpectationFailed(
                f"unsupported expectation: {unknown}; send Expect: {ASYNC} or {INLINE}"
            )
        if wanted == {ASYNC, INLINE}:
            raise ExpectationFailed(f"Expect: {ASYNC} and {INLINE} contradict each other")
        if wanted == {INLINE} and not model.runs_inline:
            raise ExpectationFailed(
                f"{model._meta.label} jobs do not run inline: send Expect: {ASYNC}, "
                "or no Expect, and follow the Location of the 202"
            )
        return cls(inline=wanted == {INLINE})

    def start(self, job: J) -> J:
        """Enqueue `job` (a new row); call it inside the transaction that creates its data.

        An inline job is enqueued too, but due only after a lease (`JOBS_LEASE_SECONDS`):
        `respond()` runs it right after the commit, before any worker may claim it, and if
        this process dies first a worker runs it then, as it would a crashed worker's job.
        """
        if self.inline:
            return job.enqueue(delay=lease_duration())
        return job.enqueue()

    def respond(self, job: Job, **body: Any) -> HttpResponse:
        """The answer to the request that started `job`; call it after the commit.

        Asynchronous: `accepted()`. Inline: the job is run here, then answered as its status
        resource would be (303 to its result, or 200 with its status), except that a run
        that failed or was cancelled answers 500, and an attempt that will be retried 202.
        The caller started the job, so the inline answer shows them its error summary
        whatever `status_visible_to()` says. `body` adds keys to the JSON.
        """
        if not self.inline:
            return accepted(job, **body)
        try:
            job.run()
        except JobNotRunnable:  # someone ran it first (an operator); it is theirs to finish
            job.refresh_from_db(fields=["state"])
            return accepted(job, **body)
        if job.state == JobState.PENDING:
            return accepted(job, **body)
        response = status_response(job, **body)
        if job.state in INLINE_NOT_DONE:
            response.status_code = INLINE_NOT_DONE[job.state]
            response["Content-Location"] = status_url(job)
        return response


def status_url(job: Job) -> str:
    """The path of `job`'s status resource (`jobs-status`)."""
    return reverse("jobs-status", args=[job._meta.label_lower, job.pk])


def accepted(job: Job, **body: Any) -> JsonResponse:
    """`202 Accepted` for a started `job`, with `Location` of its status resource and
    `Retry-After` (`retry_after()`), the seconds to wait before polling it.

    The body says the same (`id`, `model`, `state`, `status_url`) for clients that do not
    read headers; `body` adds keys of the view's own.
    """
    url = status_url(job)
    response = JsonResponse(
        {"id": job.pk, "model": job._meta.label, "state": job.state, "status_url": url} | body,
        status=202,
    )
    response["Location"] = url
    response["Retry-After"] = str(retry_after(job))
    return response


def retry_after(job: Job) -> int:
    """Whole seconds until `job` may start (a delayed job, a retry waiting out its backoff),
    and never less than SOON_SECONDS: polling sooner could only see it still pending."""
    if job.run_at is None:
        return SOON_SECONDS
    return max(SOON_SECONDS, math.ceil((job.run_at - timesource.now()).total_seconds()))


def status_json(job: Job) -> dict[str, Any]:
    """What a status resource tells about `job`: never its traceback, log or input fields.

    `error` is the latest failed attempt's type and message while the job has not succeeded
    (a running retry shows why the last attempt failed), else null.
    """
    succeeded = job.state == JobState.SUCCEEDED
    progress = None
    if job.progress_done is not None:
        progress = {"done": job.progress_done, "total": job.progress_total}
    error = None
    if job.error_type and not succeeded:
        error = {"type": job.error_type, "message": job.error_message}
    return {
        "id": job.pk,
        "model": job._meta.label,
        "state": job.state,
        "progress": progress,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "requested_at": job.requested_at,
        "run_at": job.run_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": error,
        "result_url": job.result_url() if succeeded else None,
        "status_url": status_url(job),
    }


class SeeOther(HttpResponseRedirectBase):
    """`303 See Other`: what a client asked about is elsewhere; a GET there answers it.

    A redirect response (Django's `url`, its checks of the target's scheme) whose body is
    JSON, so a client that does not follow redirects still reads the outcome.
    """

    status_code = 303

    def __init__(self, redirect_to: str, content: dict[str, Any]) -> None:
        super().__init__(
            redirect_to,
            content=json.dumps(content, cls=DjangoJSONEncoder),
            content_type="application/json",
        )


def status_response(job: Job, **body: Any) -> HttpResponse:
    """`303 See Other` to the job's result once it succeeded with one, else 200; both carry
    the status JSON (with `body`'s keys added)."""
    content = status_json(job) | body
    if content["result_url"] is None:
        return JsonResponse(content)
    return SeeOther(content["result_url"], content)


@csrf_exempt  # so a POST is answered 405 by require_safe, not 403 by the CSRF check
@never_cache  # the state changes under the same URL; no cache may answer for it
@require_safe
def status(request: HttpRequest, label: str, pk: str) -> HttpResponse:
    """The status resource of job `pk` of model `label` (`app_label.modelname`; the model
    name in any case).

    404, with one message, for a label that is not a job model, a pk that is not one of its
    rows, and a row the job model does not show to this request: a caller cannot tell a
    hidden job from a missing one.
    """
    return status_response(_visible_job(request, label, pk))


def _visible_job(request: HttpRequest, label: str, pk: str) -> Job:
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        raise Http404(NOT_FOUND) from None
    if not issubclass(model, Job):
        raise Http404(NOT_FOUND)
    try:
        job = model._default_manager.filter(pk=model._meta.pk.to_python(pk)).first()
    except ValidationError:
        raise Http404(NOT_FOUND) from None
    if job is None or not job.status_visible_to(request):
        raise Http404(NOT_FOUND)
    return job
