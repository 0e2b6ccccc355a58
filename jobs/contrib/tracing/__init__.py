"""An OpenTelemetry span per attempt, linked to the trace that enqueued the job.

    JOBS_MIDDLEWARE = ["jobs.contrib.tracing.OpenTelemetrySpans"]

Needs `opentelemetry-api` (the `otel` extra) and, to export anything, an SDK configured by
the project, as for any instrumented library. Each attempt is a span of its own, named after
the job model ("run testapp.RecordingJob"), of kind CONSUMER, in a trace of its own with a
link to the span that was current when the job was enqueued (`Job.traceparent`,
`jobs.tracing`): a job runs later and elsewhere, perhaps many times, so it is linked to its
cause, not made a child of a request that ended long ago (OpenTelemetry's messaging
conventions do the same for consumers of a queue). Its attributes name the job (model, id,
queue, attempt). An exception from the attempt is recorded on the span and sets its status
to error before it goes on to the framework; a snooze or a cancel is not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.errors import ConfigurationError
from jobs.models import Job
from jobs.tracing import span_context

TRACER_NAME = "jobs"


class OpenTelemetrySpans:
    """Job middleware: one CONSUMER span around each attempt (see the module)."""

    def __init__(self, perform_next: Callable[[Job], Any]) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise ConfigurationError(
                "jobs.contrib.tracing.OpenTelemetrySpans needs opentelemetry-api: "
                "pip install 'django-model-jobs[otel]'"
            ) from exc
        self.perform_next = perform_next
        self.trace = trace

    def __call__(self, job: Job) -> Any:
        trace = self.trace
        enqueued = span_context(job.traceparent)
        with trace.get_tracer(TRACER_NAME).start_as_current_span(
            f"run {job._meta.label}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a trace of its own
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(enqueued)] if enqueued is not None else [],
            attributes={
                "jobs.model": job._meta.label,
                "jobs.id": str(job.pk),
                "jobs.queue": job.queue,
                "jobs.attempt": job.attempts,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return self.perform_next(job)
            except Exception as exc:  # Snooze and Cancelled are BaseExceptions: not errors
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                raise
