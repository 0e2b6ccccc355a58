"""The health report over HTTP, for load balancers and monitoring: `jobs.urls` routes it.

No login: the report holds queue names, counts and durations, never a job's data, so there
is nothing to protect and a probe needs no credentials. 503 whenever something is critical
or the checks could not run, so a probe that only reads the status code does the right thing.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from jobs.errors import ConfigurationError
from jobs.monitoring.health import OK, WARNING, Report, check_health

logger = logging.getLogger(__name__)


@csrf_exempt  # so a POST is answered 405 by require_safe, not 403 by the CSRF check
@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 with the report when nothing is critical, else 503 with the same shape.

    A database error is logged here and told to the caller only as "see the server log":
    its text can name hosts and users, which an unauthenticated endpoint should not show.
    """
    try:
        report = check_health()
    except ConfigurationError as exc:
        report = Report.unknown("configuration", str(exc))
    except DatabaseError:
        logger.exception("health check could not read the job tables")
        report = Report.unknown("database", "cannot read the job tables; see the server log")
    return JsonResponse(report.as_json(), status=200 if report.status in (OK, WARNING) else 503)
