"""Health probes: healthz for load balancers and the benchmarks' baseline (no database, no
template), healthz/database for monitoring the database from the web process."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse

from mimamori.core.middleware import DATABASE_ERRORS, RETRY_AFTER_SECONDS


def healthz(request: HttpRequest) -> HttpResponse:
    # Answers while the database is down on purpose: it says the process serves, nothing more.
    return HttpResponse("ok", content_type="text/plain")


def database(request: HttpRequest) -> HttpResponse:
    """Readiness of the database: 200 "ok", or 503 "database unavailable" while it is away.

    Separate from healthz, which a proxy should keep using: taking every web process out of the
    proxy while the database is away would replace the site's own 503 page with the proxy's.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DATABASE_ERRORS:
        response = HttpResponse("database unavailable", content_type="text/plain", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return HttpResponse("ok", content_type="text/plain")
