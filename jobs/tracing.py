"""Trace context across the enqueue: which trace a job was enqueued from, as W3C `traceparent`.

A job is enqueued inside some request or task that may be traced (OpenTelemetry); it runs
later, elsewhere. To link the two, `enqueue()` keeps the enqueuing span's context on the
row (`Job.traceparent`, the W3C Trace Context header's form: version, trace id, span id,
flags), and the tracing middleware (`jobs.contrib.tracing`) links each attempt's span to it.

OpenTelemetry is optional: without `opentelemetry-api` installed, or without an active,
valid span, there is nothing to keep and the column stays empty. Reading the current span
costs a context-variable lookup, so an enqueue pays nothing noticeable either way.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

# A W3C traceparent: "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>".
TRACEPARENT_LENGTH = 55


@functools.cache
def _available() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None


def current_traceparent() -> str:
    """The active span's context as a W3C traceparent, or "" (no OpenTelemetry, no span)."""
    if not _available():
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def span_context(traceparent: str) -> Any | None:
    """The remote span context a traceparent names, for a link to it; None if it is empty or
    malformed (a row written by hand, say), or OpenTelemetry is not installed."""
    if not traceparent or not _available():
        return None
    from opentelemetry.trace import SpanContext, TraceFlags

    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00":
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return context if context.is_valid else None
