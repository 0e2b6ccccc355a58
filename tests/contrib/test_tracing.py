"""jobs.contrib.tracing: an OpenTelemetry span per attempt, linked to the enqueuing span,
checked with the SDK's in-memory exporter."""

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jobs.models import JobState
from tests.testapp.models import RecordingJob

pytestmark = pytest.mark.django_db

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)  # once per process, as a project's setup would
request_tracer = trace.get_tracer("tests.request")

SPANS = override_settings(JOBS_MIDDLEWARE=["jobs.contrib.tracing.OpenTelemetrySpans"])


@pytest.fixture(autouse=True)
def _no_spans_yet():
    EXPORTER.clear()


def traceparent(context) -> str:
    """W3C's form, written out here rather than asked of the code under test."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def attempt_spans():
    return [span for span in EXPORTER.get_finished_spans() if span.name.startswith("run ")]


@SPANS
def test_an_attempts_span_is_linked_to_the_span_that_enqueued_the_job():
    with request_tracer.start_as_current_span("POST /instances") as request:
        job = RecordingJob.objects.create(label_text="a").enqueue()
    enqueued = request.get_span_context()
    assert job.traceparent == traceparent(enqueued)
    job.run()
    (span,) = attempt_spans()
    assert span.name == "run testapp.RecordingJob"
    assert span.kind == trace.SpanKind.CONSUMER
    assert span.context.trace_id != enqueued.trace_id  # a trace of its own ...
    (link,) = span.links  # ... linked to its cause
    assert (link.context.trace_id, link.context.span_id) == (enqueued.trace_id, enqueued.span_id)
    assert dict(span.attributes) == {
        "jobs.model": "testapp.RecordingJob",
        "jobs.id": str(job.pk),
        "jobs.queue": "default",
        "jobs.attempt": 1,
    }
    assert span.status.status_code == trace.StatusCode.UNSET


@SPANS
def test_a_failed_attempts_span_records_the_exception_and_a_snooze_is_no_error():
    failed = RecordingJob.objects.create(label_text="f", fail=True).enqueue().run()
    snoozed = RecordingJob.objects.create(behaviour="snooze").enqueue().run()
    assert (failed.state, snoozed.state) == (JobState.FAILED, JobState.PENDING)
    failing, snoozing = attempt_spans()
    assert failing.status.status_code == trace.StatusCode.ERROR
    assert failing.status.description == "boom in f"
    assert [event.name for event in failing.events] == ["exception"]
    assert failing.events[0].attributes["exception.type"] == "tests.testapp.models.Boom"
    assert snoozing.status.status_code == trace.StatusCode.UNSET


@SPANS
def test_a_job_enqueued_outside_a_trace_or_with_a_bad_traceparent_has_no_link():
    plain = RecordingJob.objects.create(label_text="p").enqueue()
    assert plain.traceparent == ""
    hand_written = RecordingJob.objects.create(label_text="h").enqueue()
    RecordingJob.objects.filter(pk=hand_written.pk).update(traceparent="00-zz-zz-01")
    hand_written.refresh_from_db()
    plain.run()
    hand_written.run()
    assert [list(span.links) for span in attempt_spans()] == [[], []]


def test_bulk_enqueue_and_objects_enqueue_keep_the_trace_too():
    with request_tracer.start_as_current_span("nightly import") as request:
        bulk = RecordingJob.objects.bulk_enqueue(
            [RecordingJob(label_text=str(n)) for n in range(3)]
        )
        one = RecordingJob.objects.enqueue(label_text="one")
    expected = traceparent(request.get_span_context())
    assert {job.traceparent for job in [*bulk, one]} == {expected}
    assert set(RecordingJob.objects.values_list("traceparent", flat=True)) == {expected}
