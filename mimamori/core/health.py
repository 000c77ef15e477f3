"""A liveness probe for load balancers and the benchmarks' baseline: no database, no template."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def healthz(request: HttpRequest) -> HttpResponse:
    # Answers while the database is down on purpose: it says the process serves, nothing more.
    return HttpResponse("ok", content_type="text/plain")
