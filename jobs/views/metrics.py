"""The Prometheus endpoint: `jobs.urls` routes it as `metrics/` (name `jobs-metrics`).

Open by default: it shows queue and job model names, counts and timings, never a job's data.
Set `JOBS_METRICS_TOKEN` to require `Authorization: Bearer <token>` (Prometheus'
`authorization` scrape option sends it) where even those names should stay private.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from jobs.conf import metrics_token
from jobs.monitoring.metrics import JobsCollector


@csrf_exempt  # so a POST is answered 405 by require_safe, not 403 by the CSRF check
@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Every jobs metric in Prometheus' text format, read from the database now.

    A registry of its own per scrape, so nothing else a process registers with
    prometheus-client's global registry leaks into (or out of) this endpoint.
    """
    token = metrics_token()
    if token is not None and not _presents(request, token):
        response = HttpResponse(
            "Send the token of JOBS_METRICS_TOKEN as Authorization: Bearer <token>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="jobs-metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _presents(request: HttpRequest, token: str) -> bool:
    """Whether the request carries `token` as a bearer token, compared in constant time."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )
